package board

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
)

// channel is a match's temporary signaling channel: the only per-match
// state a board holds. It lives at most ChannelTTL, only its two
// participants may use it, and it ends at the first signaling answer.
type channel struct {
	id        string
	initiator identity.PublicKey
	responder identity.PublicKey
	iconn     *conn
	rconn     *conn // nil until the responder is connected
	timer     *time.Timer
	deadline  time.Time
	seen      map[string]bool // "phase/frame_kind" relayed so far
	pending   []byte          // the initiator's key offer, held until the responder connects
	done      bool
}

// openChannel matches initiator (on c) with the presence p. The caller
// holds s.mu and has applied canMatch.
func (s *Server) openChannel(c *conn, initiator identity.PublicKey, p *entry) {
	ch := &channel{
		id:        wire.NewNonce(),
		initiator: initiator,
		responder: p.key,
		iconn:     c,
		rconn:     p.conn,
		deadline:  s.opts.Now().Add(s.opts.ChannelTTL),
		seen:      map[string]bool{},
	}
	s.channels[ch.id] = ch
	s.perKey[ch.initiator]++
	s.perKey[ch.responder]++
	s.stats.ChannelsOpened++
	c.channels[ch] = struct{}{}
	ch.timer = time.AfterFunc(s.opts.ChannelTTL, func() { s.expire(ch) })
	s.announceMatch(ch, c, wire.RoleInitiator, ch.responder)
	if ch.rconn != nil {
		ch.rconn.channels[ch] = struct{}{}
		s.announceMatch(ch, ch.rconn, wire.RoleResponder, ch.initiator)
	} else {
		s.orphans.add(ch.responder, ch)
	}
}

func (s *Server) announceMatch(ch *channel, c *conn, role string, counterparty identity.PublicKey) {
	left := max(ch.deadline.Sub(s.opts.Now()).Milliseconds(), 0)
	c.send(wire.Marshal(&wire.Envelope{Kind: wire.KindMatch, MatchID: ch.id, Role: role, CounterpartyKey: wire.EncodeKey(counterparty), ExpiresInMS: &left}))
}

// attachResponder hands channels that were waiting for key's device to
// its new connection c (a device woken by a push reconnects and
// presents again). s.orphans indexes those channels by responder, so a
// presence costs nothing however many channels are open.
func (s *Server) attachResponder(c *conn, key identity.PublicKey) {
	for ch := range s.orphans[key] {
		ch.rconn = c
		c.channels[ch] = struct{}{}
		s.announceMatch(ch, c, wire.RoleResponder, ch.initiator)
		if ch.pending != nil {
			c.send(ch.pending)
			ch.pending = nil
		}
	}
	delete(s.orphans, key)
}

// handleRelay passes a frame to the other participant after checking
// that it comes from a participant, in its turn, signed by its sender.
func (s *Server) handleRelay(c *conn, env *wire.Envelope) {
	var f wire.Frame
	if err := json.Unmarshal(env.Blob, &f); err != nil {
		s.rejectLocked(c, env.Req, "bad_message", err.Error())
		return
	}
	from, _ := wire.DecodeKey(f.FromKey)
	to, _ := wire.DecodeKey(f.ToKey)

	s.mu.Lock()
	ch := s.channels[env.MatchID]
	code, why := s.checkSender(ch, c, from, to)
	s.mu.Unlock()
	if code != "" {
		s.rejectLocked(c, env.Req, code, why)
		return
	}
	if _, code, why := s.checkSigned(env.Blob, from, f.Timestamp); code != "" {
		s.rejectLocked(c, env.Req, code, why)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	ch = s.channels[env.MatchID]
	if code, why := s.checkSender(ch, c, from, to); code != "" {
		s.reject(c, env.Req, code, why)
		return
	}
	fromInitiator := c == ch.iconn
	switch {
	case env.FrameKind == wire.FrameOffer && !fromInitiator, env.FrameKind == wire.FrameAnswer && fromInitiator:
		s.reject(c, env.Req, "bad_message", "offers come from the initiator and answers from the responder")
		return
	case f.Phase == wire.PhaseSignaling && !(ch.seen["key/offer"] && ch.seen["key/answer"]):
		s.reject(c, env.Req, "early_answer", "the signaling phase starts after both transport keys were exchanged")
		return
	case env.FrameKind == wire.FrameAnswer && !ch.seen[f.Phase+"/offer"]:
		s.reject(c, env.Req, "early_answer", "an answer before any offer is refused")
		return
	case ch.seen[f.Phase+"/"+env.FrameKind]:
		s.reject(c, env.Req, "duplicate_frame", "this frame was already relayed in this channel")
		return
	}
	ch.seen[f.Phase+"/"+env.FrameKind] = true
	out := wire.Marshal(&wire.Envelope{Kind: wire.KindRelay, MatchID: ch.id, FrameKind: env.FrameKind, Blob: env.Blob})
	s.ack(c, env.Req)
	s.stats.Relayed++
	other := ch.rconn
	if fromInitiator {
		if other == nil {
			ch.pending = out
		} else {
			other.send(out)
		}
	} else {
		ch.iconn.send(out)
	}
	if f.Phase == wire.PhaseSignaling && env.FrameKind == wire.FrameAnswer {
		s.teardown(ch, "complete")
	}
}

// checkSender: the channel exists, c is one of its participants, and
// the frame names c's key as sender and the other as recipient.
func (s *Server) checkSender(ch *channel, c *conn, from, to identity.PublicKey) (string, string) {
	if ch == nil || ch.done {
		return "no_channel", "no open channel with this match_id (it completed, timed out, or never existed)"
	}
	var self, other identity.PublicKey
	switch c {
	case ch.iconn:
		self, other = ch.initiator, ch.responder
	case ch.rconn:
		self, other = ch.responder, ch.initiator
	default:
		return "not_participant", "only the two matched devices may use this channel"
	}
	if from != self || to != other {
		return "not_participant", "the frame's from_key/to_key are not this channel's participants"
	}
	return "", ""
}

// teardown ends a channel; the caller holds s.mu.
func (s *Server) teardown(ch *channel, reason string) {
	if ch.done {
		return
	}
	ch.done = true
	ch.timer.Stop()
	delete(s.channels, ch.id)
	if ch.rconn == nil {
		s.orphans.remove(ch.responder, ch)
	}
	for _, k := range []identity.PublicKey{ch.initiator, ch.responder} {
		if s.perKey[k]--; s.perKey[k] <= 0 {
			delete(s.perKey, k)
		}
	}
	switch reason {
	case "complete":
		s.stats.Completed++
	case "timeout":
		s.stats.TimedOut++
	case "peer_gone":
		s.stats.PeerGone++
	}
	msg := wire.Marshal(&wire.Envelope{Kind: wire.KindChannelClosed, MatchID: ch.id, Reason: reason})
	for _, c := range []*conn{ch.iconn, ch.rconn} {
		if c != nil {
			delete(c.channels, ch)
			c.send(msg)
		}
	}
	ch.pending = nil
}

// expire is the channel's timer: the responder never completed, so the
// channel goes and the responder's device is woken, once, if its newest
// presence asked for that.
func (s *Server) expire(ch *channel) {
	s.mu.Lock()
	if ch.done {
		s.mu.Unlock()
		return
	}
	s.teardown(ch, "timeout")
	endpoint := ""
	if p := s.table.presence[ch.responder]; p != nil && p.via == "" {
		endpoint = p.push
	}
	s.mu.Unlock()
	if endpoint != "" && s.opts.Pusher != nil {
		s.wake(endpoint)
	}
}

// wake sends one push without blocking the caller. A push that panics,
// fails or hangs affects nothing else.
func (s *Server) wake(endpoint string) {
	select {
	case s.push <- struct{}{}:
	default:
		s.mu.Lock()
		s.stats.PushesFailed++
		s.mu.Unlock()
		s.log.Warn("board: too many push requests in flight; one wake-up dropped")
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.push
		return
	}
	// Added under the lock that Close takes before it waits, so a
	// timer firing during Close cannot add to a WaitGroup being waited on.
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() { <-s.push }()
		ok := false
		defer func() {
			if r := recover(); r != nil {
				// Like an error, the panic value may contain the
				// endpoint: only its type is logged.
				s.log.Error("board: the push sender panicked", "panic_type", fmt.Sprintf("%T", r))
			}
			s.mu.Lock()
			if ok {
				s.stats.PushesSent++
			} else {
				s.stats.PushesFailed++
			}
			s.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
		defer cancel()
		if err := s.opts.Pusher.Push(ctx, endpoint); err != nil {
			// The error text may contain the endpoint, which identifies
			// a device: it is not logged.
			s.log.Info("board: a wake-up push failed")
			return
		}
		ok = true
	}()
}
