package board

import (
	"encoding/json"
	"html/template"
	"net/http"

	"github.com/keyhole-p2p/keyhole/internal/negotiate"
)

// serveStatus reports the board's counts: JSON for clients that ask for
// it (Accept: application/json, or ?format=json), a small HTML page for
// people. It shows counts only, never keys.
func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	st := s.Stats()
	w.Header().Set("Cache-Control", "no-store")
	if negotiate.WantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	statusPage.Execute(w, st)
}

var statusPage = template.Must(template.New("status").Parse(`<!doctype html>
<meta charset="utf-8">
<title>keyhole board</title>
<style>body{font:15px/1.4 system-ui,sans-serif;margin:2em;max-width:40em}td{padding:.15em 1em .15em 0}td+td{text-align:right;font-variant-numeric:tabular-nums}</style>
<h1>keyhole board</h1>
<p>A blind rendezvous board: devices meet here by key and swap sealed signaling it cannot read. Connect with WebSocket on this URL. Counts only; JSON at <a href="?format=json">?format=json</a>.</p>
<table>
<tr><td>connections</td><td>{{.Connections}}</td></tr>
<tr><td>neighbour boards</td><td>{{.Neighbors}}</td></tr>
<tr><td>presences waiting</td><td>{{.Presences}}</td></tr>
<tr><td>intents waiting</td><td>{{.Intents}}</td></tr>
<tr><td>table capacity</td><td>{{.Capacity}}</td></tr>
<tr><td>open channels</td><td>{{.Channels}}</td></tr>
<tr><td>channels opened</td><td>{{.ChannelsOpened}}</td></tr>
<tr><td>completed</td><td>{{.Completed}}</td></tr>
<tr><td>timed out</td><td>{{.TimedOut}}</td></tr>
<tr><td>frames relayed</td><td>{{.Relayed}}</td></tr>
<tr><td>evicted (capacity)</td><td>{{.EvictedCapacity}}</td></tr>
<tr><td>superseded</td><td>{{.Superseded}}</td></tr>
<tr><td>referrals</td><td>{{.Referrals}}</td></tr>
<tr><td>pushes sent / failed</td><td>{{.PushesSent}} / {{.PushesFailed}}</td></tr>
{{range $code, $n := .Rejected}}<tr><td>rejected: {{$code}}</td><td>{{$n}}</td></tr>
{{end}}</table>
`))
