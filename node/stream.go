package node

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"
)

// keepAlive is how often an idle room stream gets a comment, so proxies
// and NATs keep it open and a dead client is noticed.
const keepAlive = 15 * time.Second

func (s *Server) serveSubscribe(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("hash")
	if !validRoomHash(room) {
		s.fail(w, r, http.StatusBadRequest, "a room hash is 8 to 128 characters of A-Z a-z 0-9 _ -")
		return
	}
	a, ok := s.admit(w, r)
	if !ok {
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		s.fail(w, r, http.StatusInternalServerError, "this server cannot stream events")
		return
	}
	// Count the stream before joining, so Close waits for it.
	select {
	case <-s.closing:
		s.fail(w, r, http.StatusServiceUnavailable, "this node is shutting down; use another node from /nodes")
		return
	default:
	}
	s.streams.Add(1)
	defer s.streams.Done()
	sub, err := s.hub.join(room, a)
	if err != nil {
		s.m.refused.WithLabelValues("subscribers").Inc()
		w.Header().Set("Retry-After", "5")
		s.fail(w, r, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer s.hub.leave(sub)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write([]byte("retry: 3000\n: room " + room + "\n\n")); err != nil {
		return
	}
	fl.Flush()
	ping := time.NewTicker(keepAlive)
	defer ping.Stop()
	for {
		var out []byte
		select {
		case ev := <-sub.ch:
			out = ev
		case <-ping.C:
			out = []byte(": ping\n\n")
		case <-sub.gone:
			s.m.slowDropped.Inc()
			return
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
		if _, err := w.Write(out); err != nil {
			return
		}
		fl.Flush()
	}
}

func (s *Server) servePost(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("hash")
	if !validRoomHash(room) {
		s.fail(w, r, http.StatusBadRequest, "a room hash is 8 to 128 characters of A-Z a-z 0-9 _ -")
		return
	}
	ap, err := s.clientAddr(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "cannot tell your address: "+err.Error())
		return
	}
	body, ok := s.readBody(w, r, MaxPost, "the post")
	if !ok {
		s.m.refused.WithLabelValues("size").Inc()
		return
	}
	if err := checkPost(body); err != nil {
		s.m.refused.WithLabelValues("content").Inc()
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if !s.checkWork(w, r, "room/"+room, body, ap.Addr()) {
		return
	}
	s.posts.add(ap.Addr(), s.opts.Now())
	var raw [16]byte
	rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	s.seen.add(id, s.opts.Now())
	n := s.deliver(room, id, body, "local")
	s.spread(room, id, body, s.opts.MeshHops, nil)
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "subscribers": n})
}

// deliver hands a post to this node's subscribers of room.
func (s *Server) deliver(room, id string, body []byte, origin string) int {
	n, dropped := s.hub.publish(room, sseEvent(id, body))
	s.m.posts.WithLabelValues(origin).Inc()
	s.m.delivered.Add(float64(n))
	if dropped > 0 {
		s.log.Debug("node: dropped slow room subscribers", "n", dropped)
	}
	return n
}
