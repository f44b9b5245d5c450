package node

import (
	"html/template"
	"net/http"
)

// The pages are what a person sees opening a node in a browser: what it
// is, and the same data the JSON carries.
var (
	layout = template.Must(template.New("layout").Parse(`<!doctype html>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>body{font:15px/1.4 system-ui,sans-serif;margin:2em;max-width:46em}td{padding:.15em 1em .15em 0;vertical-align:top}code{word-break:break-all}</style>
<h1>{{.Title}}</h1>
{{template "body" .Data}}
<p><small>JSON: add <code>?format=json</code> or send <code>Accept: application/json</code>. Protocol: keyhole node/PROTOCOL.md.</small></p>
`))
	indexPage = page(`{{define "body"}}<p>A keyhole community node: it helps devices and browsers find each other (rooms, a blind board, a Pkarr relay) and reach each other (STUN, TURN), asking proof of work priced by its load instead of accounts.</p>
<table>
<tr><td>node key</td><td><code>{{.Node}}</code></td></tr>
<tr><td>difficulty now</td><td>{{.Difficulty}} bits ({{.BaseDifficulty}} for a client with no recent posts)</td></tr>
<tr><td>load</td><td>{{.Load}} (cpu {{.CPU}}, memory {{.Mem}})</td></tr>
<tr><td>work token</td><td><code>{{.Token}}</code> (valid {{.TokenTTL}} s)</td></tr>
<tr><td>other nodes known</td><td>{{.Peers}} (<a href="nodes">/nodes</a>)</td></tr>
<tr><td>rooms / streams</td><td>{{.Rooms}} / {{.Subscribers}}</td></tr>
{{range .STUN}}<tr><td>STUN</td><td><code>{{.}}</code></td></tr>{{end}}
{{range .TURN}}<tr><td>TURN</td><td><code>{{.}}</code> (credentials from POST /token)</td></tr>{{end}}
{{with .Board}}<tr><td>board</td><td><code>{{.}}</code></td></tr>{{end}}
{{with .Pkarr}}<tr><td>Pkarr relay</td><td><code>{{.}}</code></td></tr>{{end}}
</table>
<p>Endpoints: <a href="nodes">/nodes</a> · <a href="ip">/ip</a> · /dht-get · /dht-put · /token · /room/HASH · <a href="metrics">/metrics</a></p>{{end}}`)
	nodesPage = page(`{{define "body"}}<p>Other keyhole nodes this node has seen in the last 30 minutes, in random order.</p>
<ul>{{range .}}<li><a href="{{.}}">{{.}}</a></li>{{else}}<li>none yet</li>{{end}}</ul>{{end}}`)
	ipPage = page(`{{define "body"}}<p>Your address as this node sees it: <code>{{.IP}}</code> port {{.Port}}.</p>{{end}}`)
)

func page(body string) *template.Template {
	return template.Must(template.Must(layout.Clone()).Parse(body))
}

func renderPage(w http.ResponseWriter, status int, title string, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	t.Execute(w, struct {
		Title string
		Data  any
	}{title, data})
}
