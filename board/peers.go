package board

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/coder/websocket"

	"github.com/keyhole-p2p/keyhole/board/wire"
)

// Neighbour propagation (ORP-006). A board passes the device-signed
// presence and intent records it stores on to its neighbours, so a
// device can be found across a mesh of boards. Four bounds keep this
// from flooding: a hop limit, the freshness window, per-nonce dedup
// (the replay cache) plus the path of boards already visited, and a
// presence's boards_scope, which names the boards it may reach. Every
// hop verifies the device's signature again; a neighbour is trusted
// with nothing. Propagation extends discovery only: a match across
// boards becomes a referral, and the devices meet on one board.

// linkPeer keeps a link to one neighbour open, redialling with backoff.
func (s *Server) linkPeer(url string) {
	defer s.wg.Done()
	backoff := time.Second
	for s.ctx.Err() == nil {
		ws, _, err := websocket.Dial(s.ctx, url, nil)
		if err == nil {
			backoff = time.Second
			s.serveConn(ws, url, "")
		} else {
			s.log.Debug("board: neighbour unreachable; retrying", "backoff", backoff)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// handlePeerHello marks a connection as a neighbouring board.
func (s *Server) handlePeerHello(c *conn, env *wire.Envelope) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if env.Board == s.opts.PublicURL {
		c.shut() // a board linked to itself
		return
	}
	c.peerURL = env.Board
	s.neighbors[c] = struct{}{}
}

// propagate sends e to every neighbour allowed to have it. The caller
// holds s.mu. hops and path describe how e reached this board.
func (s *Server) propagate(e *entry, hops int, path []string) {
	if len(s.neighbors) == 0 || hops+1 > s.opts.HopLimit {
		return
	}
	if e.kind == kindPresence && len(e.scope) == 0 {
		return // this board only
	}
	path = append(slices.Clone(path), s.opts.PublicURL)
	h := hops + 1
	msg := wire.Marshal(&wire.Envelope{Kind: wire.KindPropagate, RecordKind: e.kind.String(), Record: e.raw, Hops: &h, Path: path})
	for n := range s.neighbors {
		if slices.Contains(path, n.peerURL) {
			continue
		}
		if e.kind == kindPresence && !slices.Contains(e.scope, n.peerURL) {
			continue
		}
		n.send(msg)
		s.stats.Propagated++
	}
}

// handlePropagate takes a record from a neighbour, checks it as if the
// device had sent it here, stores it as remote, and passes it on.
func (s *Server) handlePropagate(c *conn, env *wire.Envelope) {
	drop := func() {
		s.mu.Lock()
		s.stats.PropagationDrops++
		s.mu.Unlock()
	}
	if !c.isPeer() || *env.Hops > s.opts.HopLimit || slices.Contains(env.Path, s.opts.PublicURL) {
		drop()
		return
	}
	var rec struct {
		Type         string   `json:"type"`
		SelfKey      string   `json:"self_key"`
		TargetKey    string   `json:"target_key"`
		BoardsScope  []string `json:"boards_scope"`
		SessionNonce string   `json:"session_nonce"`
		Timestamp    string   `json:"timestamp"`
	}
	if err := json.Unmarshal(env.Record, &rec); err != nil || rec.Type != env.RecordKind {
		drop()
		return
	}
	key, _ := wire.DecodeKey(rec.SelfKey)
	if err := wire.VerifyRaw(env.Record, key); err != nil {
		drop()
		return
	}
	at, err := wire.CheckFresh(rec.Timestamp, s.opts.Now(), s.opts.Freshness, s.opts.FutureSkew)
	if err != nil {
		drop()
		return
	}
	if rec.Type == wire.TypePresence && !slices.Contains(rec.BoardsScope, s.opts.PublicURL) {
		drop()
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if fresh, _ := s.replay.check(rec.SessionNonce, at.Add(s.opts.Freshness), s.opts.Now()); !fresh {
		s.stats.PropagationDrops++ // seen already: a loop or a second route
		return
	}
	e := &entry{key: key, nonce: rec.SessionNonce, raw: env.Record, via: env.Path[0]}
	if rec.Type == wire.TypePresence {
		e.kind, e.scope = kindPresence, rec.BoardsScope
		if local := s.table.presence[key]; local != nil && local.via == "" {
			// The device is connected here too; the local presence wins.
			s.stats.PropagationDrops++
			return
		}
		s.table.add(e, s.capacity())
		s.matchWaiting(e)
	} else {
		e.kind = kindIntent
		e.target, _ = wire.DecodeKey(rec.TargetKey)
		if p := s.table.presence[e.target]; p != nil && p.via == "" && p.conn != nil {
			s.refer(p.conn, key, wire.RoleResponder, e.via)
		} else {
			s.table.add(e, s.capacity())
		}
	}
	s.propagate(e, *env.Hops, env.Path)
	s.countTable()
}
