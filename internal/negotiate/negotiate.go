// Package negotiate decides between JSON and a page for people, the one
// rule every keyhole HTTP server follows so a browser shows something
// readable and a program gets data from the same URL.
package negotiate

import (
	"mime"
	"net/http"
	"strings"
)

// WantsJSON reports whether r asks for JSON: ?format=json, an Accept
// header naming application/json, or a JSON request body.
func WantsJSON(r *http.Request) bool {
	if r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		return true
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json"
}
