package board

// Adversarial tests of the board server: forged and tampered records
// and frames, unexpected senders, out-of-order and duplicate frames,
// replays, bad clocks, malformed input, and floods past every limit.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
)

// envBytes builds a message from hand-made fields.
func envBytes(t testing.TB, fields map[string]any) []byte {
	t.Helper()
	return mustJSON(t, fields)
}

// TestForgedRecordSignatures: presence and intent records whose outer
// signature does not hold are refused before they touch the table.
func TestForgedRecordSignatures(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{ConnBurst: 1000})
	c := dial(t, b)
	now := b.now()
	type rc struct {
		name  string
		build func(t *testing.T) *wire.Envelope
	}
	presEnv := func(t *testing.T, m map[string]any) *wire.Envelope {
		return &wire.Envelope{Kind: wire.KindPresence, Req: "f", Record: mustJSON(t, m)}
	}
	intEnv := func(t *testing.T, m map[string]any) *wire.Envelope {
		return &wire.Envelope{Kind: wire.KindIntent, Req: "f", Record: mustJSON(t, m)}
	}
	tamper := func(field string, v any) func(t *testing.T) *wire.Envelope {
		return func(t *testing.T) *wire.Envelope {
			m := toMap(t, newPresence(t, newKey(t), now, nil, "https://push.example/a"))
			m[field] = v
			return presEnv(t, m)
		}
	}
	flip := func(at int) func(t *testing.T) *wire.Envelope {
		return func(t *testing.T) *wire.Envelope {
			p := newPresence(t, newKey(t), now, nil, "")
			p.Signature = flipSig(p.Signature, at)
			return presenceEnv(t, p, "f")
		}
	}
	cases := []rc{
		{"presence signed by A claiming self_key B", func(t *testing.T) *wire.Envelope {
			a, victim := newKey(t), newKey(t)
			m := toMap(t, newPresence(t, a, now, nil, ""))
			m["self_key"] = b64(victim)
			return presEnv(t, signMap(t, a, m))
		}},
		{"presence carrying another presence's signature", func(t *testing.T) *wire.Envelope {
			k := newKey(t)
			p1, p2 := newPresence(t, k, now, nil, ""), newPresence(t, k, now, nil, "")
			p1.Signature = p2.Signature
			return presenceEnv(t, p1, "f")
		}},
		{"presence carrying an intent's signature", func(t *testing.T) *wire.Envelope {
			k := newKey(t)
			p := newPresence(t, k, now, nil, "")
			p.Signature = newIntent(t, k, newKey(t).Public(), now).Signature
			return presenceEnv(t, p, "f")
		}},
		{"signature bit flip at 0", flip(0)},
		{"signature bit flip at 21", flip(21)},
		{"signature bit flip at 43", flip(43)},
		{"signature bit flip at 84", flip(84)},
		{"malleated signature (S+L)", func(t *testing.T) *wire.Envelope {
			p := newPresence(t, newKey(t), now, nil, "")
			p.Signature = malleate(t, p.Signature)
			return presenceEnv(t, p, "f")
		}},
		{"all-zero signature", func(t *testing.T) *wire.Envelope {
			p := newPresence(t, newKey(t), now, nil, "")
			p.Signature = strings.Repeat("A", 86)
			return presenceEnv(t, p, "f")
		}},
		{"small-order self_key", func(t *testing.T) *wire.Envelope {
			var id [32]byte
			id[0] = 1 // the identity point
			m := toMap(t, newPresence(t, newKey(t), now, nil, ""))
			m["self_key"] = wire.B64.EncodeToString(id[:])
			return presEnv(t, m)
		}},
		{"signed over non-canonical JSON", func(t *testing.T) *wire.Envelope {
			k := newKey(t)
			p := newPresence(t, k, now, nil, "")
			p.Signature = ""
			raw, _ := json.Marshal(p) // struct order, not sorted
			raw = bytes.Replace(raw, []byte(`,"signature":""`), nil, 1)
			p.Signature = wire.B64.EncodeToString(k.Sign(raw))
			return presenceEnv(t, p, "f")
		}},
		{"timestamp moved after signing", tamper("timestamp", wire.FormatTime(now.Add(time.Millisecond)))},
		{"session_nonce changed after signing", tamper("session_nonce", wire.NewNonce())},
		{"boards_scope widened after signing", tamper("boards_scope", []string{"wss://elsewhere.example/"})},
		{"webrtc_caps changed after signing", tamper("webrtc_caps", []string{"relay_only"})},
		{"push_token redirected after signing", tamper("push_token", "https://attacker.example/steal")},
		{"push_token removed after signing", func(t *testing.T) *wire.Envelope {
			m := toMap(t, newPresence(t, newKey(t), now, nil, "https://push.example/a"))
			delete(m, "push_token")
			return presEnv(t, m)
		}},
		{"intent signed by its target", func(t *testing.T) *wire.Envelope {
			i, r := newKey(t), newKey(t)
			m := toMap(t, newIntent(t, i, r.Public(), now))
			return intEnv(t, signMap(t, r, m))
		}},
		{"intent retargeted after signing", func(t *testing.T) *wire.Envelope {
			m := toMap(t, newIntent(t, newKey(t), newKey(t).Public(), now))
			m["target_key"] = b64(newKey(t))
			return intEnv(t, m)
		}},
		{"intent in a victim's name", func(t *testing.T) *wire.Envelope {
			attacker, victim := newKey(t), newKey(t)
			m := toMap(t, newIntent(t, attacker, newKey(t).Public(), now))
			m["self_key"] = b64(victim)
			return intEnv(t, signMap(t, attacker, m))
		}},
		{"intent carrying a presence's signature", func(t *testing.T) *wire.Envelope {
			k := newKey(t)
			in := newIntent(t, k, newKey(t).Public(), now)
			in.Signature = newPresence(t, k, now, nil, "").Signature
			return intentEnv(t, in, "f")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.send(tc.build(t))
			if e := c.expectRejected("bad_signature"); e.Req != "f" {
				t.Fatalf("req %q", e.Req)
			}
		})
	}
	c.t = t
	st := b.srv.Stats()
	if st.Presences != 0 || st.Intents != 0 || st.Rejected["bad_signature"] != len(cases) {
		t.Fatalf("%+v", st)
	}
}

// TestForgedFrames: frames on a live channel that are forged, tampered,
// misaddressed, mistimed or in the wrong direction are refused, and do
// not disturb the channel.
func TestForgedFrames(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{ConnBurst: 1000})
	p := matchPair(t, b)
	third := newKey(t)
	now := b.now()
	offer := func(t *testing.T) map[string]any { return toMap(t, p.frame(t, wire.FrameOffer, wire.PhaseKey)) }
	env := func(t *testing.T, m any) *wire.Envelope { return relayEnv(t, m, "x") }
	cases := []struct {
		name  string
		fromR bool
		code  string
		build func(t *testing.T) *wire.Envelope
	}{
		{"signed by a third key", false, "bad_signature", func(t *testing.T) *wire.Envelope { return env(t, signMap(t, third, offer(t))) }},
		{"signed by the counterparty", false, "bad_signature", func(t *testing.T) *wire.Envelope { return env(t, signMap(t, p.rk, offer(t))) }},
		{"signature bit flip", false, "bad_signature", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			m["signature"] = flipSig(m["signature"].(string), 30)
			return env(t, m)
		}},
		{"malleated signature", false, "bad_signature", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			m["signature"] = malleate(t, m["signature"].(string))
			return env(t, m)
		}},
		{"signature of another frame", false, "bad_signature", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			m["signature"] = p.frame(t, wire.FrameOffer, wire.PhaseKey).Signature
			return env(t, m)
		}},
		{"transport key substituted in the binding", false, "bad_signature", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			tk, _ := identity.NewTransportKey()
			pub := tk.Public()
			m["binding"].(map[string]any)["transport_key"] = wire.B64.EncodeToString(pub[:])
			return env(t, m)
		}},
		{"timestamp moved after signing", false, "bad_signature", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			m["timestamp"] = wire.FormatTime(now.Add(-time.Second))
			return env(t, m)
		}},
		{"sealed blob tampered", false, "bad_signature", func(t *testing.T) *wire.Envelope {
			m := toMap(t, p.frame(t, wire.FrameOffer, wire.PhaseSignaling))
			m["sealed"] = flipSig(m["sealed"].(string), 10)
			return env(t, m)
		}},
		{"from_key forged as the counterparty", false, "not_participant", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			m["from_key"] = b64(p.rk)
			return env(t, signMap(t, p.ik, m))
		}},
		{"the counterparty's own frame sent back", false, "not_participant", func(t *testing.T) *wire.Envelope {
			return env(t, p.frame(t, wire.FrameAnswer, wire.PhaseKey))
		}},
		{"to_key names a third device", false, "not_participant", func(t *testing.T) *wire.Envelope {
			return env(t, newFrame(t, p.ik, third.Public(), p.id, wire.FrameOffer, wire.PhaseKey, now))
		}},
		{"to_key names the sender", false, "not_participant", func(t *testing.T) *wire.Envelope {
			return env(t, newFrame(t, p.ik, p.ik.Public(), p.id, wire.FrameOffer, wire.PhaseKey, now))
		}},
		{"stale frame", false, "stale", func(t *testing.T) *wire.Envelope {
			return env(t, newFrame(t, p.ik, p.rk.Public(), p.id, wire.FrameOffer, wire.PhaseKey, now.Add(-10*time.Minute)))
		}},
		{"future frame", false, "future", func(t *testing.T) *wire.Envelope {
			return env(t, newFrame(t, p.ik, p.rk.Public(), p.id, wire.FrameOffer, wire.PhaseKey, now.Add(10*time.Minute)))
		}},
		{"offer from the responder", true, "bad_message", func(t *testing.T) *wire.Envelope {
			return env(t, newFrame(t, p.rk, p.ik.Public(), p.id, wire.FrameOffer, wire.PhaseKey, now))
		}},
		{"answer from the initiator", false, "bad_message", func(t *testing.T) *wire.Envelope {
			return env(t, newFrame(t, p.ik, p.rk.Public(), p.id, wire.FrameAnswer, wire.PhaseKey, now))
		}},
		{"frame_kind disagrees with the frame's type", false, "bad_message", func(t *testing.T) *wire.Envelope {
			e := env(t, p.frame(t, wire.FrameOffer, wire.PhaseKey))
			e.FrameKind = wire.FrameAnswer
			return e
		}},
		{"frame names another match than the envelope", false, "bad_message", func(t *testing.T) *wire.Envelope {
			e := env(t, newFrame(t, p.ik, p.rk.Public(), wire.NewNonce(), wire.FrameOffer, wire.PhaseKey, now))
			e.MatchID = p.id
			return e
		}},
		{"frame moved to this match after signing", false, "bad_signature", func(t *testing.T) *wire.Envelope {
			m := toMap(t, newFrame(t, p.ik, p.rk.Public(), wire.NewNonce(), wire.FrameOffer, wire.PhaseKey, now))
			m["match_id"] = p.id
			return env(t, m)
		}},
		{"unknown match_id", false, "no_channel", func(t *testing.T) *wire.Envelope {
			return env(t, newFrame(t, p.ik, p.rk.Public(), wire.NewNonce(), wire.FrameOffer, wire.PhaseKey, now))
		}},
		{"extra field in the frame, signed", false, "bad_message", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			m["sdp"] = "v=0 c=IN IP4 192.0.2.1"
			return env(t, signMap(t, p.ik, m))
		}},
		{"extra field in the binding", false, "bad_message", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			m["binding"].(map[string]any)["ip"] = "192.0.2.1"
			return env(t, signMap(t, p.ik, m))
		}},
		{"sealed blob in a key frame", false, "bad_message", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			m["sealed"] = strings.Repeat("A", 100)
			return env(t, signMap(t, p.ik, m))
		}},
		{"binding in a signaling frame", false, "bad_message", func(t *testing.T) *wire.Envelope {
			m := toMap(t, p.frame(t, wire.FrameOffer, wire.PhaseSignaling))
			m["binding"] = offer(t)["binding"]
			return env(t, signMap(t, p.ik, m))
		}},
		{"sealed blob too short", false, "bad_message", func(t *testing.T) *wire.Envelope {
			m := toMap(t, p.frame(t, wire.FrameOffer, wire.PhaseSignaling))
			m["sealed"] = "AAAA"
			return env(t, signMap(t, p.ik, m))
		}},
		{"unsigned frame", false, "bad_message", func(t *testing.T) *wire.Envelope {
			m := offer(t)
			delete(m, "signature")
			return env(t, m)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := p.ic
			if tc.fromR {
				c = p.rc
			}
			c.t = t
			c.send(tc.build(t))
			c.expectRejected(tc.code)
		})
	}
	p.ic.t, p.rc.t = t, t
	// Nothing was relayed and nothing was marked seen: the real
	// exchange goes through (pass checks the next relay is its own).
	if st := b.srv.Stats(); st.Relayed != 0 || st.Channels != 1 {
		t.Fatalf("%+v", st)
	}
	p.keyPhase(t)
	p.pass(t, wire.FrameOffer, wire.PhaseSignaling)
	p.pass(t, wire.FrameAnswer, wire.PhaseSignaling)
	expectChannelClosed(t, p.ic, p.id, "complete")
}

// TestThirdPartyInjection: nobody but the two matched connections can
// put a frame into a channel, whatever it signs or replays.
func TestThirdPartyInjection(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{})
	p := matchPair(t, b)
	offer := p.frame(t, wire.FrameOffer, wire.PhaseKey)
	captured := wire.Marshal(relayEnv(t, offer, "cap"))
	p.ic.write(captured)
	p.ic.expectAck("cap")
	p.rc.expect(wire.KindRelay)

	mk := newKey(t)
	m := dial(t, b)
	present(t, m, b, mk, nil, "") // a device in good standing
	now := b.now()
	cases := []struct {
		name string
		c    *rawClient
		msg  func(t *testing.T) []byte
		code string
	}{
		{"third device, own key", m, func(t *testing.T) []byte {
			return wire.Marshal(relayEnv(t, newFrame(t, mk, p.ik.Public(), p.id, wire.FrameAnswer, wire.PhaseKey, now), "m"))
		}, "not_participant"},
		{"third device posing as the responder", m, func(t *testing.T) []byte {
			f := toMap(t, newFrame(t, mk, p.ik.Public(), p.id, wire.FrameAnswer, wire.PhaseKey, now))
			f["from_key"] = b64(p.rk)
			return wire.Marshal(relayEnv(t, signMap(t, mk, f), "m"))
		}, "not_participant"},
		{"third device replaying a captured frame", m, func(t *testing.T) []byte { return captured }, "not_participant"},
		{"third device guessing a match_id", m, func(t *testing.T) []byte {
			return wire.Marshal(relayEnv(t, newFrame(t, mk, p.ik.Public(), wire.NewNonce(), wire.FrameAnswer, wire.PhaseKey, now), "m"))
		}, "no_channel"},
	}
	// The initiator's own key on a second connection is a third party
	// too: the channel belongs to the connections that were matched.
	twin := dial(t, b)
	cases = append(cases, struct {
		name string
		c    *rawClient
		msg  func(t *testing.T) []byte
		code string
	}{"the initiator's key on another connection", twin, func(t *testing.T) []byte {
		return wire.Marshal(relayEnv(t, newFrame(t, p.ik, p.rk.Public(), p.id, wire.FrameOffer, wire.PhaseSignaling, now), "m"))
	}, "not_participant"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.t = t
			tc.c.write(tc.msg(t))
			tc.c.expectRejected(tc.code)
		})
	}
	p.ic.expectQuiet(quiet)
	p.rc.expectQuiet(0)
	p.pass(t, wire.FrameAnswer, wire.PhaseKey)
	if st := b.srv.Stats(); st.Relayed != 2 || st.Rejected["not_participant"] != 4 {
		t.Fatalf("%+v", st)
	}
}

// TestReplayedPresenceCannotHijack: a captured presence replayed by
// someone else cannot attach them to the device's waiting channel.
func TestReplayedPresenceCannotHijack(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{})
	ik, rk := newKey(t), newKey(t)
	rc := dial(t, b)
	pres := presenceEnv(t, newPresence(t, rk, b.now(), nil, ""), "p")
	rc.send(pres)
	rc.expectAck("p")
	rc.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, "the disconnect", func() bool { return b.srv.Stats().Connections == 0 })
	ic := dial(t, b)
	ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
	ic.expectAck("i")
	m := ic.expect(wire.KindMatch)
	ic.send(relayEnv(t, newFrame(t, ik, rk.Public(), m.MatchID, wire.FrameOffer, wire.PhaseKey, b.now()), "o"))
	ic.expectAck("o")
	thief := dial(t, b)
	thief.send(pres)
	thief.expectRejected("replay")
	// No match and no held offer for the thief.
	thief.expectQuiet(quiet)
}

// TestFrameOrder: the channel's rules on what may come when.
func TestFrameOrder(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{MaxChannelsPerKey: 100, MatchBurst: 100, AnnounceBurst: 100})
	send := func(t *testing.T, p *pair, kind, phase, code string) {
		t.Helper()
		c := p.ic
		if kind == wire.FrameAnswer {
			c = p.rc
		}
		c.t = t
		c.send(relayEnv(t, p.frame(t, kind, phase), "x"))
		c.expectRejected(code)
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, p *pair)
		kind  string
		phase string
		code  string
	}{
		{"key answer before the key offer", nil, wire.FrameAnswer, wire.PhaseKey, "early_answer"},
		{"signaling offer before any key frame", nil, wire.FrameOffer, wire.PhaseSignaling, "early_answer"},
		{"signaling answer before any key frame", nil, wire.FrameAnswer, wire.PhaseSignaling, "early_answer"},
		{"signaling offer before the key answer", func(t *testing.T, p *pair) { p.pass(t, wire.FrameOffer, wire.PhaseKey) }, wire.FrameOffer, wire.PhaseSignaling, "early_answer"},
		{"signaling answer before the signaling offer", func(t *testing.T, p *pair) { p.keyPhase(t) }, wire.FrameAnswer, wire.PhaseSignaling, "early_answer"},
		{"second key offer", func(t *testing.T, p *pair) { p.pass(t, wire.FrameOffer, wire.PhaseKey) }, wire.FrameOffer, wire.PhaseKey, "duplicate_frame"},
		{"second key answer", func(t *testing.T, p *pair) { p.keyPhase(t) }, wire.FrameAnswer, wire.PhaseKey, "duplicate_frame"},
		{"second signaling offer", func(t *testing.T, p *pair) {
			p.keyPhase(t)
			p.pass(t, wire.FrameOffer, wire.PhaseSignaling)
		}, wire.FrameOffer, wire.PhaseSignaling, "duplicate_frame"},
		{"key offer after the signaling offer", func(t *testing.T, p *pair) {
			p.keyPhase(t)
			p.pass(t, wire.FrameOffer, wire.PhaseSignaling)
		}, wire.FrameOffer, wire.PhaseKey, "duplicate_frame"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := matchPair(t, b)
			if tc.setup != nil {
				tc.setup(t, p)
			}
			send(t, p, tc.kind, tc.phase, tc.code)
			// The refused frame went nowhere and ended nothing: the
			// rest of the exchange still works.
			p.ic.t, p.rc.t = t, t
			if !channelOpen(b.srv, p.id) {
				t.Fatal("a refused frame ended the channel")
			}
			p.ic.expectQuiet(20 * time.Millisecond)
			p.rc.expectQuiet(0)
		})
	}
	t.Run("identical bytes twice", func(t *testing.T) {
		p := matchPair(t, b)
		e := wire.Marshal(relayEnv(t, p.frame(t, wire.FrameOffer, wire.PhaseKey), "x"))
		p.ic.write(e)
		p.ic.expectAck("x")
		p.rc.expect(wire.KindRelay)
		p.ic.write(e)
		p.ic.expectRejected("duplicate_frame")
		p.rc.expectQuiet(quiet)
	})
}

// channelOpen reports whether the channel id is still open.
func channelOpen(s *Server, id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[id]
	return ch != nil && !ch.done
}

// TestReplay: a presence or intent is accepted once.
func TestReplay(t *testing.T) {
	t.Parallel()
	t.Run("presence twice on one connection", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{})
		c := dial(t, b)
		e := presenceEnv(t, newPresence(t, newKey(t), b.now(), nil, ""), "p")
		c.send(e)
		c.expectAck("p")
		c.send(e)
		c.expectRejected("replay")
		c.expectQuiet(quiet) // no evicted: the replay superseded nothing
		if st := b.srv.Stats(); st.Superseded != 0 || st.Presences != 1 || st.Rejected["replay"] != 1 {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("intent twice", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{})
		c := dial(t, b)
		e := intentEnv(t, newIntent(t, newKey(t), newKey(t).Public(), b.now()), "i")
		c.send(e)
		c.expectAck("i")
		c.send(e)
		c.expectRejected("replay")
		if st := b.srv.Stats(); st.Intents != 1 {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("matched intent replayed", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{MaxChannelsPerKey: 10})
		rk, ik := newKey(t), newKey(t)
		rc := dial(t, b)
		present(t, rc, b, rk, nil, "")
		ic := dial(t, b)
		e := intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i")
		ic.send(e)
		ic.expectAck("i")
		ic.expect(wire.KindMatch)
		rc.expect(wire.KindMatch)
		ic.send(e)
		ic.expectRejected("replay")
		rc.expectQuiet(quiet)
		if st := b.srv.Stats(); st.ChannelsOpened != 1 {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("presence replayed from another connection", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{})
		rk, ik := newKey(t), newKey(t)
		owner, thief := dial(t, b), dial(t, b)
		e := presenceEnv(t, newPresence(t, rk, b.now(), nil, ""), "p")
		owner.send(e)
		owner.expectAck("p")
		thief.send(e)
		thief.expectRejected("replay")
		ic := dial(t, b)
		ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
		ic.expectAck("i")
		ic.expect(wire.KindMatch)
		owner.expect(wire.KindMatch) // still the owner's: not superseded
		thief.expectQuiet(quiet)
	})
	t.Run("replay after the original was superseded", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{})
		rk, ik := newKey(t), newKey(t)
		c1, c2, c3 := dial(t, b), dial(t, b), dial(t, b)
		e1 := presenceEnv(t, newPresence(t, rk, b.now(), nil, ""), "p")
		c1.send(e1)
		c1.expectAck("p")
		present(t, c2, b, rk, nil, "")
		c1.expect(wire.KindEvicted)
		c3.send(e1)
		c3.expectRejected("replay")
		c2.expectQuiet(quiet)
		ic := dial(t, b)
		ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
		ic.expectAck("i")
		ic.expect(wire.KindMatch)
		c2.expect(wire.KindMatch)
		c1.expectQuiet(quiet)
		c3.expectQuiet(0)
		if st := b.srv.Stats(); st.Superseded != 1 {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("same nonce re-signed with a new time", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{})
		k := newKey(t)
		c := dial(t, b)
		p := present(t, c, b, k, nil, "")
		m := toMap(t, p)
		m["timestamp"] = wire.FormatTime(b.now().Add(time.Second))
		c.send(&wire.Envelope{Kind: wire.KindPresence, Req: "p2", Record: mustJSON(t, signMap(t, k, m))})
		c.expectRejected("replay")
	})
	t.Run("a presence's nonce reused by an intent", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{})
		k := newKey(t)
		c := dial(t, b)
		p := present(t, c, b, k, nil, "")
		m := toMap(t, newIntent(t, k, newKey(t).Public(), b.now()))
		m["session_nonce"] = p.SessionNonce
		c.send(&wire.Envelope{Kind: wire.KindIntent, Req: "i", Record: mustJSON(t, signMap(t, k, m))})
		c.expectRejected("replay")
	})
	t.Run("a forged record does not burn the nonce", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{})
		k, attacker := newKey(t), newKey(t)
		p := newPresence(t, k, b.now(), nil, "")
		forged := toMap(t, p)
		forged["webrtc_caps"] = []string{"relay_only"}
		c := dial(t, b)
		c.send(&wire.Envelope{Kind: wire.KindPresence, Req: "f", Record: mustJSON(t, signMap(t, attacker, forged))})
		c.expectRejected("bad_signature")
		c.send(presenceEnv(t, p, "p"))
		c.expectAck("p")
	})
}

// TestReplayCacheBound: the nonce cache is bounded by ReplayCacheMax
// (a full cache refuses, it does not forget fresh nonces) and by the
// freshness window (entries older than the window are forgotten, and
// their records are refused as stale instead).
func TestReplayCacheBound(t *testing.T) {
	t.Parallel()
	clk := newClock()
	b := startBoard(t, Options{Now: clk.Now, ReplayCacheMax: 2, Freshness: 60 * time.Second})
	c := dial(t, b)
	send := func(e *wire.Envelope, code string) {
		t.Helper()
		c.send(e)
		if code == "" {
			c.expectAck(e.Req)
		} else {
			c.expectRejected(code)
		}
	}
	intent := func(req string) *wire.Envelope {
		return intentEnv(t, newIntent(t, newKey(t), newKey(t).Public(), clk.Now()), req)
	}
	first := intent("a")
	send(first, "")
	send(intent("b"), "")
	third := intent("c")
	send(third, "busy")
	send(first, "replay") // still remembered
	clk.Advance(30 * time.Second)
	send(third, "busy") // the window has not passed: still full
	clk.Advance(30*time.Second + time.Millisecond)
	// The first two are past the window now: forgotten, and stale.
	send(first, "stale")
	send(intent("d"), "")
	send(intent("e"), "")
	send(intent("f"), "busy")
	if st := b.srv.Stats(); st.Rejected["busy"] != 3 || st.Rejected["stale"] != 1 || st.Rejected["replay"] != 1 {
		t.Fatalf("%+v", st)
	}
}

// TestTimestamps: the freshness window and the future skew, at and just
// past their edges, and timestamps that are not timestamps.
func TestTimestamps(t *testing.T) {
	t.Parallel()
	clk := newClock()
	b := startBoard(t, Options{Now: clk.Now, Freshness: 60 * time.Second, FutureSkew: 10 * time.Second, ConnBurst: 1000})
	c := dial(t, b)
	now := clk.Now()
	cases := []struct {
		name   string
		ts     string
		intent bool
		code   string
	}{
		{"now", wire.FormatTime(now), false, ""},
		{"59.999 s old", wire.FormatTime(now.Add(-59999 * time.Millisecond)), false, ""},
		{"exactly the window", wire.FormatTime(now.Add(-60 * time.Second)), false, ""},
		{"1 ms past the window", wire.FormatTime(now.Add(-60001 * time.Millisecond)), false, "stale"},
		{"an hour old", wire.FormatTime(now.Add(-time.Hour)), false, "stale"},
		{"year 2000", "2000-01-01T00:00:00.000Z", false, "stale"},
		{"intent 1 ms past the window", wire.FormatTime(now.Add(-60001 * time.Millisecond)), true, "stale"},
		{"exactly the skew ahead", wire.FormatTime(now.Add(10 * time.Second)), false, ""},
		{"1 ms beyond the skew", wire.FormatTime(now.Add(10001 * time.Millisecond)), false, "future"},
		{"an hour ahead", wire.FormatTime(now.Add(time.Hour)), false, "future"},
		{"year 2999", "2999-12-31T23:59:59.999Z", false, "future"},
		{"intent 1 ms beyond the skew", wire.FormatTime(now.Add(10001 * time.Millisecond)), true, "future"},
		{"no milliseconds", now.Format("2006-01-02T15:04:05Z"), false, "bad_message"},
		{"numeric offset", now.Format("2006-01-02T15:04:05.000+00:00"), false, "bad_message"},
		{"space separator", now.Format("2006-01-02 15:04:05.000Z"), false, "bad_message"},
		{"lower case", strings.ToLower(wire.FormatTime(now)), false, "bad_message"},
		{"microseconds", now.Format("2006-01-02T15:04:05.000000Z"), false, "bad_message"},
		{"unix milliseconds", fmt.Sprint(now.UnixMilli()), false, "bad_message"},
		{"empty", "", false, "bad_message"},
		{"month 13", "2031-13-04T05:06:07.000Z", false, "bad_message"},
		{"February 30", "2031-02-30T05:06:07.000Z", false, "bad_message"},
		{"hour 24", "2031-03-04T24:00:00.000Z", false, "bad_message"},
		{"intent month 00", "2031-00-04T05:06:07.000Z", true, "bad_message"},
	}
	accepted := 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			k := newKey(t)
			var m map[string]any
			kind := wire.KindPresence
			if tc.intent {
				kind = wire.KindIntent
				m = toMap(t, newIntent(t, k, newKey(t).Public(), now))
			} else {
				m = toMap(t, newPresence(t, k, now, nil, ""))
			}
			m["timestamp"] = tc.ts
			c.send(&wire.Envelope{Kind: kind, Req: "t", Record: mustJSON(t, signMap(t, k, m))})
			if tc.code == "" {
				c.expectAck("t")
				accepted++
			} else {
				c.expectRejected(tc.code)
			}
		})
	}
	c.t = t
	if st := b.srv.Stats(); st.Presences != accepted {
		t.Fatalf("%d presences, %d accepted", st.Presences, accepted)
	}
}

// TestMalformedMessages: anything that is not exactly one schema-valid
// client message is refused as bad_message, and the connection goes on.
func TestMalformedMessages(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{ConnBurst: 1000})
	c := dial(t, b)
	now := b.now()
	k := newKey(t)
	pres := func(t *testing.T) map[string]any { return toMap(t, newPresence(t, k, now, nil, "")) }
	valid := func(t *testing.T) []byte { return wire.Marshal(presenceEnv(t, newPresence(t, k, now, nil, ""), "v")) }
	withRecord := func(kind string, edit func(t *testing.T, m map[string]any)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			var m map[string]any
			if kind == wire.KindIntent {
				m = toMap(t, newIntent(t, k, newKey(t).Public(), now))
			} else {
				m = pres(t)
			}
			edit(t, m)
			return envBytes(t, map[string]any{"kind": kind, "record": signMap(t, k, m)})
		}
	}
	frameMsg := func(edit func(t *testing.T, m map[string]any)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			m := toMap(t, newFrame(t, k, newKey(t).Public(), wire.NewNonce(), wire.FrameOffer, wire.PhaseKey, now))
			edit(t, m)
			return wire.Marshal(relayEnv(t, signMap(t, k, m), "r"))
		}
	}
	plainFrame := frameMsg(func(*testing.T, map[string]any) {})
	lit := func(s string) func(t *testing.T) []byte { return func(*testing.T) []byte { return []byte(s) } }
	board := func(kind string, fields map[string]any) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			fields["kind"] = kind
			return envBytes(t, fields)
		}
	}
	nest := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	cases := []struct {
		name string
		msg  func(t *testing.T) []byte
	}{
		{"not JSON", lit("hello board")},
		{"empty message", lit("")},
		{"empty object", lit("{}")},
		{"array", lit(`[{"kind":"presence"}]`)},
		{"null", lit("null")},
		{"string", lit(`"presence"`)},
		{"number", lit("42")},
		{"truncated", func(t *testing.T) []byte { v := valid(t); return v[:len(v)-5] }},
		{"trailing garbage", func(t *testing.T) []byte { return append(valid(t), 'x') }},
		{"two messages in one frame", func(t *testing.T) []byte { return append(valid(t), valid(t)...) }},
		{"byte order mark", func(t *testing.T) []byte { return append([]byte("\ufeff"), valid(t)...) }},
		{"NaN", lit(`{"kind":"presence","record":NaN}`)},
		{"huge number", lit(`{"kind":"presence","record":1e999}`)},
		{"deep nesting", lit(`{"kind":"presence","record":` + nest + `}`)},
		{"kind not a string", lit(`{"kind":1}`)},
		{"no kind", func(t *testing.T) []byte { return envBytes(t, map[string]any{"record": pres(t)}) }},
		{"unknown kind", lit(`{"kind":"hug"}`)},
		{"kind in capitals", func(t *testing.T) []byte { return envBytes(t, map[string]any{"kind": "PRESENCE", "record": pres(t)}) }},
		{"null record", lit(`{"kind":"presence","record":null}`)},
		{"record is a string", lit(`{"kind":"presence","record":"{}"}`)},
		{"client sends hello", board("hello", map[string]any{"version": 1, "pow_bits": 0, "max_frame": 65536, "freshness_ms": 120000})},
		{"client sends ack", board("ack", map[string]any{})},
		{"client sends rejected", board("rejected", map[string]any{"code": "busy", "reason": "x"})},
		{"client sends evicted", board("evicted", map[string]any{"record_kind": "presence", "session_nonce": wire.NewNonce(), "reason": "capacity"})},
		{"client sends match", board("match", map[string]any{"match_id": wire.NewNonce(), "role": "initiator", "counterparty_key": wire.EncodeKey(k.Public()), "expires_in_ms": 1000})},
		{"client sends channel_closed", board("channel_closed", map[string]any{"match_id": wire.NewNonce(), "reason": "complete"})},
		{"client sends referral", board("referral", map[string]any{"counterparty_key": wire.EncodeKey(k.Public()), "role": "initiator", "board": "ws://evil.example/"})},
		{"client sends propagate", func(t *testing.T) []byte {
			return envBytes(t, map[string]any{"kind": "propagate", "record_kind": "presence", "record": pres(t), "hops": 1, "path": []string{"ws://evil.example/"}})
		}},
		{"extra envelope field", func(t *testing.T) []byte {
			return envBytes(t, map[string]any{"kind": "presence", "record": pres(t), "ip": "192.0.2.7"})
		}},
		{"extra record field, signed", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["ip"] = "192.0.2.7" })},
		{"transport key in a presence, signed", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["transport_key"] = wire.EncodeKey(k.Public()) })},
		{"target in a presence, signed", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["target_key"] = wire.EncodeKey(k.Public()) })},
		{"sdp in an intent, signed", withRecord(wire.KindIntent, func(t *testing.T, m map[string]any) { m["sdp"] = "v=0" })},
		{"presence record in an intent envelope", func(t *testing.T) []byte {
			return envBytes(t, map[string]any{"kind": "intent", "record": pres(t)})
		}},
		{"record type lies", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["type"] = "intent" })},
		{"missing signature", func(t *testing.T) []byte {
			m := pres(t)
			delete(m, "signature")
			return envBytes(t, map[string]any{"kind": "presence", "record": m})
		}},
		{"empty signature", func(t *testing.T) []byte {
			m := pres(t)
			m["signature"] = ""
			return envBytes(t, map[string]any{"kind": "presence", "record": m})
		}},
		{"padded base64 key", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["self_key"] = m["self_key"].(string) + "=" })},
		{"non-canonical base64 key", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) {
			s := []byte(m["self_key"].(string))
			s[len(s)-1] = 'B'
			m["self_key"] = string(s)
		})},
		{"standard base64 key", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) {
			m["self_key"] = "+" + m["self_key"].(string)[1:]
		})},
		{"short nonce", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["session_nonce"] = "AAAA" })},
		{"no webrtc_caps", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["webrtc_caps"] = []string{} })},
		{"unknown webrtc cap", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["webrtc_caps"] = []string{"telepathy"} })},
		{"http board in scope", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["boards_scope"] = []string{"http://board.example/"} })},
		{"duplicate boards in scope", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) {
			m["boards_scope"] = []string{"ws://a.example/", "ws://a.example/"}
		})},
		{"nine boards in scope", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) {
			var s []string
			for i := range 9 {
				s = append(s, fmt.Sprintf("ws://b%d.example/", i))
			}
			m["boards_scope"] = s
		})},
		{"scope is not a list", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["boards_scope"] = "ws://a.example/" })},
		{"javascript push token", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["push_token"] = "javascript:alert(1)" })},
		{"push token with a space", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) { m["push_token"] = "https://push.example/a b" })},
		{"push token too long", withRecord(wire.KindPresence, func(t *testing.T, m map[string]any) {
			m["push_token"] = "https://push.example/" + strings.Repeat("a", 500)
		})},
		{"pow with bad characters", func(t *testing.T) []byte {
			return envBytes(t, map[string]any{"kind": "presence", "record": pres(t), "pow": "a+b/c="})
		}},
		{"numeric req", func(t *testing.T) []byte {
			return envBytes(t, map[string]any{"kind": "presence", "record": pres(t), "req": 7})
		}},
		{"duplicate envelope key", func(t *testing.T) []byte {
			return bytes.Replace(valid(t), []byte(`{"kind":"presence"`), []byte(`{"kind":"presence","kind":"presence"`), 1)
		}},
		{"duplicate record key", func(t *testing.T) []byte {
			return bytes.Replace(valid(t), []byte(`"record":{`), []byte(`"record":{"self_key":"`+wire.EncodeKey(newKey(t).Public())+`",`), 1)
		}},
		{"duplicate binding key", func(t *testing.T) []byte {
			return bytes.Replace(plainFrame(t), []byte(`"binding":{`), []byte(`"binding":{"transport_key":"`+wire.EncodeKey(newKey(t).Public())+`",`), 1)
		}},
		{"invalid UTF-8 in req", func(t *testing.T) []byte {
			return bytes.Replace(valid(t), []byte(`"req":"v"`), []byte("\"req\":\"v\xff\""), 1)
		}},
		{"invalid UTF-8 in the record", func(t *testing.T) []byte {
			return bytes.Replace(valid(t), []byte(`"datachannel"`), []byte("\"data\xc0\xafchannel\""), 1)
		}},
		{"relay without blob", lit(`{"kind":"relay","match_id":"` + wire.NewNonce() + `","frame_kind":"offer"}`)},
		{"relay blob not an object", lit(`{"kind":"relay","match_id":"` + wire.NewNonce() + `","frame_kind":"offer","blob":"x"}`)},
		{"unknown frame_kind", frameMsg(func(t *testing.T, m map[string]any) { m["type"] = "match_ice" })},
		{"frame phase unknown", frameMsg(func(t *testing.T, m map[string]any) { m["phase"] = "data" })},
		{"key frame without binding", frameMsg(func(t *testing.T, m map[string]any) { delete(m, "binding") })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			c.write(tc.msg(t))
			e := c.expectRejected("bad_message")
			if len(e.Reason) == 0 || len(e.Reason) > 300 {
				t.Fatalf("reason %q", e.Reason)
			}
		})
	}
	c.t = t
	// The connection survived all of it.
	c.send(presenceEnv(t, newPresence(t, newKey(t), now, nil, ""), "ok"))
	c.expectAck("ok")
	if st := b.srv.Stats(); st.Rejected["bad_message"] != len(cases) || st.Presences != 1 || st.Neighbors != 0 {
		t.Fatalf("%d cases: %+v", len(cases), st)
	}
}

// TestRequestIDEcho: a rejection echoes req only when it is a valid req.
func TestRequestIDEcho(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{})
	c := dial(t, b)
	for _, tc := range []struct{ req, want string }{
		{"abc_-1", "abc_-1"},
		{strings.Repeat("a", 32), strings.Repeat("a", 32)},
		{strings.Repeat("a", 33), ""},
		{"has space", ""},
		{"<script>", ""},
		{`quote"`, ""},
	} {
		c.write(envBytes(t, map[string]any{"kind": "bogus", "req": tc.req}))
		if e := c.expectRejected("bad_message"); e.Req != tc.want {
			t.Fatalf("req %q echoed as %q", tc.req, e.Req)
		}
	}
	p := newPresence(t, newKey(t), b.now(), nil, "")
	p.Signature = flipSig(p.Signature, 5)
	c.send(presenceEnv(t, p, "sig1"))
	if e := c.expectRejected("bad_signature"); e.Req != "sig1" {
		t.Fatalf("req %q", e.Req)
	}
}

// TestOversizeFrame: MaxFrame bytes pass; one more closes the
// connection with 1009.
func TestOversizeFrame(t *testing.T) {
	t.Parallel()
	const max = 4096
	b := startBoard(t, Options{MaxFrame: max})
	pad := func(msg []byte, n int) []byte {
		return append(msg, bytes.Repeat([]byte(" "), n-len(msg))...)
	}
	c := dial(t, b)
	if c.hello.MaxFrame != max {
		t.Fatalf("hello max_frame %d", c.hello.MaxFrame)
	}
	c.write(pad(wire.Marshal(presenceEnv(t, newPresence(t, newKey(t), b.now(), nil, ""), "full")), max))
	c.expectAck("full")
	c.write(pad(wire.Marshal(presenceEnv(t, newPresence(t, newKey(t), b.now(), nil, ""), "over")), max+1))
	c.expectClosed(nil, websocket.StatusMessageTooBig)
	if st := b.srv.Stats(); st.Presences != 1 {
		t.Fatalf("%+v", st)
	}
	// Far too big: also closed, and the board carries on.
	c2 := dial(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c2.ws.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("A"), 1<<20)) // may fail: the board hangs up
	c2.expectClosed(nil, websocket.StatusMessageTooBig)
	present(t, dial(t, b), b, newKey(t), nil, "")
}

func TestBinaryFrame(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{})
	c := dial(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, wire.Marshal(presenceEnv(t, newPresence(t, newKey(t), b.now(), nil, ""), "bin"))); err != nil {
		t.Fatal(err)
	}
	c.expectClosed(nil, websocket.StatusUnsupportedData)
	if st := b.srv.Stats(); st.Presences != 0 {
		t.Fatalf("a binary frame was read: %+v", st)
	}
}

// TestAnnounceRateLimit: the per-identity token bucket covers presence
// and intent alike, refills with time, and a refused record's nonce is
// not used up.
func TestAnnounceRateLimit(t *testing.T) {
	t.Parallel()
	clk := newClock()
	b := startBoard(t, Options{Now: clk.Now, AnnounceRate: 1, AnnounceBurst: 3, ConnBurst: 100})
	c := dial(t, b)
	k := newKey(t)
	in := func(req string) *wire.Envelope {
		return intentEnv(t, newIntent(t, k, newKey(t).Public(), clk.Now()), req)
	}
	for i := range 3 {
		c.send(in(fmt.Sprint(i)))
		c.expectAck(fmt.Sprint(i))
	}
	limited := in("lim")
	c.send(limited)
	if e := c.expectRejected("rate_limited"); e.Req != "lim" {
		t.Fatalf("req %q", e.Req)
	}
	c.send(presenceEnv(t, newPresence(t, k, clk.Now(), nil, ""), "pres"))
	c.expectRejected("rate_limited")
	// Another identity on the same connection is not affected.
	present(t, c, b, newKey(t), nil, "")
	// One second buys one record: the refused intent, whose nonce was
	// not spent.
	clk.Advance(time.Second)
	c.send(limited)
	c.expectAck("lim")
	c.send(in("again"))
	c.expectRejected("rate_limited")
	if st := b.srv.Stats(); st.Intents != 4 || st.Rejected["rate_limited"] != 3 {
		t.Fatalf("%+v", st)
	}
}

// TestMatchThrottle: an initiator may open only so many matches; a
// throttled intent toward an absent device waits instead of matching.
func TestMatchThrottle(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{MatchRate: rate.Limit(0.001), MatchBurst: 2, MaxChannelsPerKey: 10})
	ik := newKey(t)
	ic := dial(t, b)
	for i := range 3 {
		rk := newKey(t)
		rc := dial(t, b)
		present(t, rc, b, rk, nil, "")
		ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
		if i < 2 {
			ic.expectAck("i")
			ic.expect(wire.KindMatch)
			rc.expect(wire.KindMatch)
		} else {
			ic.expectRejected("rate_limited")
			rc.expectQuiet(quiet)
		}
	}
	late := newKey(t)
	ic.send(intentEnv(t, newIntent(t, ik, late.Public(), b.now()), "w"))
	ic.expectAck("w")
	lc := dial(t, b)
	present(t, lc, b, late, nil, "")
	lc.expectQuiet(quiet)
	ic.expectQuiet(0)
	if st := b.srv.Stats(); st.Channels != 2 || st.Intents != 1 || st.Rejected["rate_limited"] != 1 {
		t.Fatalf("%+v", st)
	}
	// Another initiator is not throttled by this one.
	oc := dial(t, b)
	oc.send(intentEnv(t, newIntent(t, newKey(t), late.Public(), b.now()), "o"))
	oc.expectAck("o")
	oc.expect(wire.KindMatch)
}

// TestChannelCaps: MaxChannelsPerKey on either side, and MaxChannels.
func TestChannelCaps(t *testing.T) {
	t.Parallel()
	t.Run("per initiator", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{MaxChannelsPerKey: 2})
		ik := newKey(t)
		ic := dial(t, b)
		var rcs []*rawClient
		for i := range 3 {
			rk := newKey(t)
			rc := dial(t, b)
			present(t, rc, b, rk, nil, "")
			ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
			if i < 2 {
				ic.expectAck("i")
				ic.expect(wire.KindMatch)
				rc.expect(wire.KindMatch)
				rcs = append(rcs, rc)
				continue
			}
			ic.expectRejected("too_many_channels")
			// One channel ends: the cap lifts.
			rcs[0].ws.Close(websocket.StatusNormalClosure, "")
			ic.expect(wire.KindChannelClosed)
			ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i2"))
			ic.expectAck("i2")
			ic.expect(wire.KindMatch)
			rc.expect(wire.KindMatch)
		}
	})
	t.Run("per responder", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{MaxChannelsPerKey: 2})
		rk := newKey(t)
		rc := dial(t, b)
		present(t, rc, b, rk, nil, "")
		for i := range 3 {
			ic := dial(t, b)
			ic.send(intentEnv(t, newIntent(t, newKey(t), rk.Public(), b.now()), "i"))
			if i < 2 {
				ic.expectAck("i")
				ic.expect(wire.KindMatch)
				rc.expect(wire.KindMatch)
			} else {
				ic.expectRejected("too_many_channels")
			}
		}
		rc.expectQuiet(quiet)
	})
	t.Run("waiting intent stays waiting at the cap", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{MaxChannelsPerKey: 1})
		p := matchPair(t, b)
		other := newKey(t)
		p.ic.send(intentEnv(t, newIntent(t, p.ik, other.Public(), b.now()), "w"))
		p.ic.expectAck("w")
		oc := dial(t, b)
		present(t, oc, b, other, nil, "")
		oc.expectQuiet(quiet)
		if st := b.srv.Stats(); st.Intents != 1 || st.Channels != 1 {
			t.Fatalf("%+v", st)
		}
	})
	t.Run("MaxChannels", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{MaxChannels: 1})
		p := matchPair(t, b)
		rk := newKey(t)
		rc := dial(t, b)
		present(t, rc, b, rk, nil, "")
		ic := dial(t, b)
		ik := newKey(t)
		ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
		ic.expectRejected("busy")
		rc.expectQuiet(quiet)
		p.keyPhase(t)
		p.pass(t, wire.FrameOffer, wire.PhaseSignaling)
		p.pass(t, wire.FrameAnswer, wire.PhaseSignaling)
		ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i2"))
		ic.expectAck("i2")
		ic.expect(wire.KindMatch)
	})
}

// TestConnMessageRate: the per-connection limit applies before anything
// else is looked at, and only to that connection.
func TestConnMessageRate(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{ConnRate: rate.Limit(0.001), ConnBurst: 4})
	c := dial(t, b)
	for range 4 {
		c.write([]byte("{}"))
		c.expectRejected("bad_message")
	}
	c.send(presenceEnv(t, newPresence(t, newKey(t), b.now(), nil, ""), "p"))
	if e := c.expectRejected("rate_limited"); e.Req != "" {
		t.Fatalf("req %q: the message was read", e.Req)
	}
	c.write([]byte("{}"))
	c.expectRejected("rate_limited")
	present(t, dial(t, b), b, newKey(t), nil, "")
	if st := b.srv.Stats(); st.Presences != 1 || st.Rejected["rate_limited"] != 2 {
		t.Fatalf("%+v", st)
	}
}

// TestMaxConns: past MaxConns the upgrade gets 503 with Retry-After;
// a freed slot can be used again.
func TestMaxConns(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{MaxConns: 2})
	c1 := dial(t, b)
	dial(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, b.url, nil)
	if err == nil {
		ws.CloseNow()
		t.Fatal("a third connection was accepted")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "30" {
		t.Fatalf("refusal: %v %+v", err, resp)
	}
	c1.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, "a free slot", func() bool { return b.srv.Stats().Connections == 1 })
	dial(t, b)
}

// smallBuffers makes the board's socket send buffers tiny, so a client
// that does not read fills them quickly.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// TestSlowReaderDropped: a client that sends but never reads is cut off
// once its outbound queue is full, and others carry on meanwhile.
func TestSlowReaderDropped(t *testing.T) {
	t.Parallel()
	tb := newTestBoard(t)
	tb.hs.Listener = smallBuffers{tb.hs.Listener}
	logs := &syncBuffer{}
	b := tb.start(t, Options{ConnRate: rate.Inf, Logger: slog.New(slog.NewTextHandler(logs, nil))})

	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, b.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	// Each message earns a rejection of about 300 bytes.
	junk := []byte(`{"kind":"` + strings.Repeat("x", 250) + `"}`)
	const limit = 20000
	type result struct {
		n   int
		err error
		at  time.Duration
	}
	sent := make(chan result, 1)
	start := time.Now()
	go func() {
		n := 0
		var err error
		for ; n < limit; n++ {
			wctx, wcancel := context.WithTimeout(context.Background(), waitLong)
			err = ws.Write(wctx, websocket.MessageText, junk)
			wcancel()
			if err != nil {
				break
			}
		}
		sent <- result{n, err, time.Since(start)}
	}()

	// Meanwhile a rendezvous on the same board goes through.
	p := matchPair(t, b)
	p.keyPhase(t)
	p.pass(t, wire.FrameOffer, wire.PhaseSignaling)
	p.pass(t, wire.FrameAnswer, wire.PhaseSignaling)
	expectChannelClosed(t, p.ic, p.id, "complete")

	var r result
	select {
	case r = <-sent:
	case <-time.After(20 * time.Second):
		t.Fatal("the flood was never cut off")
	}
	if r.n >= limit {
		t.Fatalf("the board kept reading a client that never reads (%d messages)", r.n)
	}
	eventually(t, "the slow reader to be dropped", func() bool { return b.srv.Stats().Connections == 2 })
	if !strings.Contains(logs.String(), "does not read") {
		t.Fatalf("flood ended after %d messages, %s: %v; log: %s", r.n, r.at, r.err, logs.String())
	}
	n := r.n
	// The others are still connected and served.
	present(t, p.ic, b, p.ik, nil, "")
	t.Logf("cut off after %d messages", n)
}

// TestPoWAdmission: with HashcashAdmission the hello advertises the
// bits and records need work tied to their own signature.
func TestPoWAdmission(t *testing.T) {
	t.Parallel()
	const bits = 8
	b := startBoard(t, Options{Admission: HashcashAdmission{Bits: bits}})
	c := dial(t, b)
	if c.hello.PoWBits == nil || *c.hello.PoWBits != bits {
		t.Fatalf("hello %s", wire.Marshal(c.hello))
	}
	solve := func(sig string) string {
		pow, err := wire.SolvePoW(sig, bits)
		if err != nil {
			t.Fatal(err)
		}
		return pow
	}
	weak := func(sig string) string {
		for i := 0; ; i++ {
			pow := fmt.Sprintf("w%d", i)
			if wire.CheckPoW(sig, pow, bits) != nil {
				return pow
			}
		}
	}

	t.Run("presence", func(t *testing.T) {
		c.t = t
		p := newPresence(t, newKey(t), b.now(), nil, "")
		e := presenceEnv(t, p, "p")
		c.send(e)
		c.expectRejected("pow_required")
		e.PoW = weak(p.Signature)
		c.send(e)
		c.expectRejected("pow_required")
		// Work done for another record does not count.
		other := newPresence(t, newKey(t), b.now(), nil, "")
		for e.PoW = solve(other.Signature); wire.CheckPoW(p.Signature, e.PoW, bits) == nil; {
			other = newPresence(t, newKey(t), b.now(), nil, "")
			e.PoW = solve(other.Signature)
		}
		c.send(e)
		c.expectRejected("pow_required")
		// The refusals did not spend the nonce.
		e.PoW = solve(p.Signature)
		c.send(e)
		c.expectAck("p")
		// Work is no licence to replay.
		c.send(e)
		c.expectRejected("replay")
	})
	t.Run("intent", func(t *testing.T) {
		c.t = t
		in := newIntent(t, newKey(t), newKey(t).Public(), b.now())
		e := intentEnv(t, in, "i")
		c.send(e)
		c.expectRejected("pow_required")
		e.PoW = solve(in.Signature)
		c.send(e)
		c.expectAck("i")
	})
	t.Run("work does not excuse a bad signature", func(t *testing.T) {
		c.t = t
		p := newPresence(t, newKey(t), b.now(), nil, "")
		p.Signature = flipSig(p.Signature, 10)
		e := presenceEnv(t, p, "p")
		e.PoW = solve(p.Signature)
		c.send(e)
		c.expectRejected("bad_signature")
	})
	t.Run("malformed work", func(t *testing.T) {
		c.t = t
		e := presenceEnv(t, newPresence(t, newKey(t), b.now(), nil, ""), "p")
		e.PoW = "not/base64url"
		c.send(e)
		c.expectRejected("bad_message")
	})
	c.t = t
	if st := b.srv.Stats(); st.Rejected["pow_required"] != 4 || st.Presences != 1 || st.Intents != 1 {
		t.Fatalf("%+v", st)
	}

	t.Run("no admission hook", func(t *testing.T) {
		b := startBoard(t, Options{})
		c := dial(t, b)
		if *c.hello.PoWBits != 0 {
			t.Fatalf("pow_bits %d", *c.hello.PoWBits)
		}
		e := presenceEnv(t, newPresence(t, newKey(t), b.now(), nil, ""), "p")
		e.PoW = "ignored"
		c.send(e)
		c.expectAck("p")
	})
}
