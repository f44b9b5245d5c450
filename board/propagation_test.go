package board

// Neighbour propagation (ORP-006) between real boards on loopback, and
// a fake neighbour that sends whatever the test builds.

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
)

// startMesh starts n boards; links[i] lists the boards i dials. Every
// board gets its own URL as PublicURL and its tap counts the rejections
// it sends.
func startMesh(t testing.TB, n int, links map[int][]int, base Options) ([]*testBoard, *atomic.Int64) {
	t.Helper()
	rejected := &atomic.Int64{}
	tbs := make([]*testBoard, n)
	for i := range tbs {
		tbs[i] = newTestBoard(t)
	}
	want := make([]int, n)
	for i, tb := range tbs {
		o := base
		o.PublicURL = tb.url
		o.Peers = nil
		for _, j := range links[i] {
			o.Peers = append(o.Peers, tbs[j].url)
			want[i]++
			want[j]++
		}
		o.Tap = func(in bool, msg []byte) {
			var h struct{ Kind string }
			if !in && json.Unmarshal(msg, &h) == nil && h.Kind == wire.KindRejected {
				rejected.Add(1)
			}
		}
		tb.start(t, o)
	}
	for i, tb := range tbs {
		eventually(t, "the links to come up", func() bool { return tb.srv.Stats().Neighbors == want[i] })
	}
	return tbs, rejected
}

// presenceOf reports whether b holds a presence for k and whether it
// is remote (came from a neighbour).
func presenceOf(b *testBoard, k identity.PublicKey) (ok, remote bool) {
	b.srv.mu.Lock()
	defer b.srv.mu.Unlock()
	e := b.srv.table.presence[k]
	return e != nil, e != nil && e.via != ""
}

func propagateEnv(t testing.TB, kind string, rec any, hops int, path ...string) *wire.Envelope {
	return &wire.Envelope{Kind: wire.KindPropagate, RecordKind: kind, Record: mustJSON(t, rec), Hops: &hops, Path: path}
}

// TestLinkedBoardsIdle: two linked boards count each other and nothing
// else: no records, no drops, no rejections.
func TestLinkedBoardsIdle(t *testing.T) {
	t.Parallel()
	bs, rejected := startMesh(t, 2, map[int][]int{0: {1}}, Options{})
	time.Sleep(quiet)
	for i, b := range bs {
		if st := b.srv.Stats(); st.Neighbors != 1 || st.PropagationDrops != 0 || st.Presences != 0 || st.Connections != 1 {
			t.Fatalf("board %d: %+v", i, st)
		}
	}
	if rejected.Load() != 0 {
		t.Fatal("a board sent a rejection to its neighbour")
	}
}

// TestPropagationScope: a presence goes only to the neighbours its
// boards_scope names, and only if it names any.
func TestPropagationScope(t *testing.T) {
	t.Parallel()
	bs, rejected := startMesh(t, 3, map[int][]int{0: {1, 2}}, Options{})
	a, b, c := bs[0], bs[1], bs[2]
	dev := dial(t, a)
	none, toB, toC := newKey(t), newKey(t), newKey(t)
	present(t, dev, a, none, nil, "")
	present(t, dial(t, a), a, toB, []string{b.url}, "")
	present(t, dial(t, a), a, toC, []string{c.url, "wss://unrelated.example/"}, "")
	eventually(t, "B to hear of toB", func() bool { ok, _ := presenceOf(b, toB.Public()); return ok })
	eventually(t, "C to hear of toC", func() bool { ok, _ := presenceOf(c, toC.Public()); return ok })
	// Records travel in order on each link: what was sent before has
	// arrived.
	for _, x := range []struct {
		b *testBoard
		k *identity.PrivateKey
	}{{b, none}, {b, toC}, {c, none}, {c, toB}} {
		if ok, _ := presenceOf(x.b, x.k.Public()); ok {
			t.Fatal("a presence reached a board outside its scope")
		}
	}
	if _, remote := presenceOf(b, toB.Public()); !remote {
		t.Fatal("the propagated presence is not marked remote")
	}
	if st := a.srv.Stats(); st.Propagated != 2 || st.Presences != 3 {
		t.Fatalf("A: %+v", st)
	}
	if st := b.srv.Stats(); st.Presences != 1 || st.PropagationDrops != 0 {
		t.Fatalf("B: %+v", st)
	}
	if rejected.Load() != 0 {
		t.Fatal("a board sent a rejection")
	}
}

// TestReferralAcrossBoards: propagation extends discovery; the devices
// are sent to one board to meet.
func TestReferralAcrossBoards(t *testing.T) {
	t.Parallel()
	t.Run("intent after the presence", func(t *testing.T) {
		t.Parallel()
		bs, rejected := startMesh(t, 2, map[int][]int{0: {1}}, Options{})
		a, b := bs[0], bs[1]
		dk, ik := newKey(t), newKey(t)
		dc := dial(t, a)
		present(t, dc, a, dk, []string{b.url}, "")
		eventually(t, "B to hear of the device", func() bool { ok, _ := presenceOf(b, dk.Public()); return ok })
		ic := dial(t, b)
		ic.send(intentEnv(t, newIntent(t, ik, dk.Public(), b.now()), "i"))
		ic.expectAck("i")
		r := ic.expect(wire.KindReferral)
		if r.Board != a.url || r.Role != wire.RoleInitiator || r.CounterpartyKey != b64(dk) {
			t.Fatalf("referral %s", wire.Marshal(r))
		}
		if st := b.srv.Stats(); st.Referrals != 1 || st.ChannelsOpened != 0 {
			t.Fatalf("B: %+v", st)
		}
		dc.expectQuiet(quiet)
		if rejected.Load() != 0 {
			t.Fatal("a board sent a rejection")
		}
	})
	t.Run("intent before the presence", func(t *testing.T) {
		t.Parallel()
		bs, rejected := startMesh(t, 2, map[int][]int{0: {1}}, Options{})
		a, b := bs[0], bs[1]
		dk, ik := newKey(t), newKey(t)
		ic := dial(t, b)
		ic.send(intentEnv(t, newIntent(t, ik, dk.Public(), b.now()), "i"))
		ic.expectAck("i")
		// Intents need no scope: it reaches A and waits there too.
		eventually(t, "A to hear of the intent", func() bool { return a.srv.Stats().Intents == 1 })
		dc := dial(t, a)
		present(t, dc, a, dk, []string{b.url}, "")
		r := dc.expect(wire.KindReferral)
		if r.Board != b.url || r.Role != wire.RoleResponder || r.CounterpartyKey != b64(ik) {
			t.Fatalf("device's referral %s", wire.Marshal(r))
		}
		r = ic.expect(wire.KindReferral)
		if r.Board != a.url || r.Role != wire.RoleInitiator || r.CounterpartyKey != b64(dk) {
			t.Fatalf("initiator's referral %s", wire.Marshal(r))
		}
		eventually(t, "the intents to be done", func() bool { return a.srv.Stats().Intents == 0 && b.srv.Stats().Intents == 0 })
		if rejected.Load() != 0 {
			t.Fatal("a board sent a rejection")
		}
	})
}

// TestHopLimit: a record travels at most HopLimit boards on.
func TestHopLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		limit  int
		reachC bool
	}{{1, false}, {2, true}, {3, true}} {
		t.Run(fmt.Sprint("limit ", tc.limit), func(t *testing.T) {
			t.Parallel()
			bs, _ := startMesh(t, 3, map[int][]int{0: {1}, 1: {2}}, Options{HopLimit: tc.limit})
			a, b, c := bs[0], bs[1], bs[2]
			k := newKey(t)
			present(t, dial(t, a), a, k, []string{b.url, c.url}, "")
			eventually(t, "B to hear of it", func() bool { ok, _ := presenceOf(b, k.Public()); return ok })
			fwd := b.srv.Stats().Propagated
			if tc.reachC {
				if fwd != 1 {
					t.Fatalf("B forwarded %d", fwd)
				}
				eventually(t, "C to hear of it", func() bool { ok, _ := presenceOf(c, k.Public()); return ok })
				if st := c.srv.Stats(); st.Propagated != 0 {
					t.Fatalf("C: %+v", st) // C's only neighbour is on the path
				}
				return
			}
			if fwd != 0 {
				t.Fatalf("B forwarded past the hop limit")
			}
			time.Sleep(quiet)
			if ok, _ := presenceOf(c, k.Public()); ok {
				t.Fatal("C heard of it")
			}
		})
	}
}

// TestDedupAcrossRoutes: a record that can reach a board by two routes
// is taken once. A dials B and C, and C dials B; which copies travel
// depends on timing (a board forwards only the copy it accepted, never
// to a board already on its path), but every board holds the record
// once, none replaced it with a second copy, at least one copy was
// dropped as a duplicate, and A never got its own record back.
func TestDedupAcrossRoutes(t *testing.T) {
	t.Parallel()
	bs, _ := startMesh(t, 3, map[int][]int{0: {1, 2}, 2: {1}}, Options{})
	a, b, c := bs[0], bs[1], bs[2]
	k := newKey(t)
	present(t, dial(t, a), a, k, []string{b.url, c.url}, "")
	drops := func() int { return b.srv.Stats().PropagationDrops + c.srv.Stats().PropagationDrops }
	eventually(t, "a duplicate to be dropped", func() bool { return drops() >= 1 })
	time.Sleep(quiet)
	if d := drops(); d > 2 {
		t.Fatalf("%d drops for two extra copies at most", d)
	}
	for _, x := range []*testBoard{b, c} {
		if st := x.srv.Stats(); st.Presences != 1 || st.Superseded != 0 {
			t.Fatalf("%+v", st)
		}
		if _, remote := presenceOf(x, k.Public()); !remote {
			t.Fatal("not held as remote")
		}
	}
	if st := a.srv.Stats(); st.PropagationDrops != 0 || st.Presences != 1 || st.Superseded != 0 {
		t.Fatalf("A got its own record back: %+v", st)
	}
}

// TestLocalPresenceWins: a device connected here is not replaced by a
// copy of its presence from a neighbour.
func TestLocalPresenceWins(t *testing.T) {
	t.Parallel()
	bs, _ := startMesh(t, 2, map[int][]int{0: {1}}, Options{})
	a, b := bs[0], bs[1]
	dk := newKey(t)
	onB := dial(t, b)
	present(t, onB, b, dk, nil, "")
	present(t, dial(t, a), a, dk, []string{b.url}, "")
	eventually(t, "B to drop the copy", func() bool { return b.srv.Stats().PropagationDrops == 1 })
	if _, remote := presenceOf(b, dk.Public()); remote {
		t.Fatal("the remote copy replaced the local presence")
	}
	onB.expectQuiet(0) // not evicted
	ic := dial(t, b)
	ic.send(intentEnv(t, newIntent(t, newKey(t), dk.Public(), b.now()), "i"))
	ic.expectAck("i")
	ic.expect(wire.KindMatch)
	onB.expect(wire.KindMatch)
}

// TestFakeNeighbour: what a board does with what a neighbour sends. A
// neighbour is trusted with nothing: every record is checked again, and
// nothing is ever answered.
func TestFakeNeighbour(t *testing.T) {
	t.Parallel()
	const fake = "ws://fake-neighbour.example/"
	clk := newClock()
	tb := newTestBoard(t)
	var rejected atomic.Int64
	b := tb.start(t, Options{PublicURL: tb.url, Now: clk.Now, HopLimit: 3, Tap: func(in bool, msg []byte) {
		var h struct{ Kind string }
		if !in && json.Unmarshal(msg, &h) == nil && h.Kind == wire.KindRejected {
			rejected.Add(1)
		}
	}})
	n := dialNeighbour(t, b, fake)
	now := clk.Now()
	scoped := func(t *testing.T) (*identity.PrivateKey, map[string]any) {
		k := newKey(t)
		return k, toMap(t, newPresence(t, k, now, []string{b.url}, ""))
	}
	cases := []struct {
		name string
		msg  func(t *testing.T) []byte
	}{
		{"inner signature broken", func(t *testing.T) []byte {
			_, m := scoped(t)
			m["signature"] = flipSig(m["signature"].(string), 40)
			return wire.Marshal(propagateEnv(t, "presence", m, 1, fake))
		}},
		{"scope widened after signing", func(t *testing.T) []byte {
			m := toMap(t, newPresence(t, newKey(t), now, []string{"wss://other.example/"}, ""))
			m["boards_scope"] = []string{b.url}
			return wire.Marshal(propagateEnv(t, "presence", m, 1, fake))
		}},
		{"push token swapped after signing", func(t *testing.T) []byte {
			_, m := scoped(t)
			m["push_token"] = "https://attacker.example/"
			return wire.Marshal(propagateEnv(t, "presence", m, 1, fake))
		}},
		{"signed by the neighbour, not the device", func(t *testing.T) []byte {
			_, m := scoped(t)
			return wire.Marshal(propagateEnv(t, "presence", signMap(t, newKey(t), m), 1, fake))
		}},
		{"intent retargeted", func(t *testing.T) []byte {
			m := toMap(t, newIntent(t, newKey(t), newKey(t).Public(), now))
			m["target_key"] = b64(newKey(t))
			return wire.Marshal(propagateEnv(t, "intent", m, 1, fake))
		}},
		{"stale record", func(t *testing.T) []byte {
			k := newKey(t)
			return wire.Marshal(propagateEnv(t, "presence", newPresence(t, k, now.Add(-time.Hour), []string{b.url}, ""), 1, fake))
		}},
		{"future record", func(t *testing.T) []byte {
			k := newKey(t)
			return wire.Marshal(propagateEnv(t, "presence", newPresence(t, k, now.Add(time.Hour), []string{b.url}, ""), 1, fake))
		}},
		{"presence not scoped to this board", func(t *testing.T) []byte {
			return wire.Marshal(propagateEnv(t, "presence", newPresence(t, newKey(t), now, []string{fake}, ""), 1, fake))
		}},
		{"presence with no scope", func(t *testing.T) []byte {
			return wire.Marshal(propagateEnv(t, "presence", newPresence(t, newKey(t), now, nil, ""), 1, fake))
		}},
		{"record_kind disagrees with the record", func(t *testing.T) []byte {
			_, m := scoped(t)
			return wire.Marshal(propagateEnv(t, "intent", m, 1, fake))
		}},
		{"past the hop limit", func(t *testing.T) []byte {
			_, m := scoped(t)
			return wire.Marshal(propagateEnv(t, "presence", m, 4, fake))
		}},
		{"hops beyond the schema", func(t *testing.T) []byte {
			_, m := scoped(t)
			return wire.Marshal(propagateEnv(t, "presence", m, 9, fake))
		}},
		{"path through this board (loop)", func(t *testing.T) []byte {
			_, m := scoped(t)
			return wire.Marshal(propagateEnv(t, "presence", m, 2, fake, b.url))
		}},
		{"path starting at this board", func(t *testing.T) []byte {
			_, m := scoped(t)
			return wire.Marshal(propagateEnv(t, "presence", m, 1, b.url))
		}},
		{"empty path", func(t *testing.T) []byte {
			_, m := scoped(t)
			return wire.Marshal(propagateEnv(t, "presence", m, 1))
		}},
		{"extra field in the record, signed", func(t *testing.T) []byte {
			k, m := scoped(t)
			m["ip"] = "192.0.2.9"
			return wire.Marshal(propagateEnv(t, "presence", signMap(t, k, m), 1, fake))
		}},
		{"extra field in the envelope", func(t *testing.T) []byte {
			_, m := scoped(t)
			return envBytes(t, map[string]any{"kind": "propagate", "record_kind": "presence", "record": m, "hops": 1, "path": []string{fake}, "via": "x"})
		}},
		{"not JSON", func(t *testing.T) []byte { return []byte("hello neighbour") }},
		{"a device's presence message", func(t *testing.T) []byte {
			return wire.Marshal(presenceEnv(t, newPresence(t, newKey(t), now, []string{b.url}, ""), "p"))
		}},
		{"a relay", func(t *testing.T) []byte {
			return wire.Marshal(relayEnv(t, newFrame(t, newKey(t), newKey(t).Public(), wire.NewNonce(), wire.FrameOffer, wire.PhaseKey, now), "r"))
		}},
		{"a rejection (no ping-pong)", func(t *testing.T) []byte {
			return envBytes(t, map[string]any{"kind": "rejected", "code": "bad_message", "reason": "you first"})
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n.t = t
			n.write(tc.msg(t))
			eventually(t, "the drop", func() bool { return b.srv.Stats().PropagationDrops == i+1 })
		})
	}
	n.t = t
	n.expectQuiet(quiet)
	if st := b.srv.Stats(); st.Presences != 0 || st.Intents != 0 || rejected.Load() != 0 || len(st.Rejected) != 0 {
		t.Fatalf("%+v, %d rejections sent", st, rejected.Load())
	}

	// A valid record at the hop limit is taken once; the same again is
	// a duplicate, from this neighbour or another.
	k, m := scoped(t)
	good := wire.Marshal(propagateEnv(t, "presence", m, 3, "ws://origin.example/", fake))
	n.write(good)
	eventually(t, "the record", func() bool { ok, _ := presenceOf(b, k.Public()); return ok })
	drops := b.srv.Stats().PropagationDrops
	n.write(good)
	n2 := dialNeighbour(t, b, "ws://second-neighbour.example/")
	n2.write(good)
	eventually(t, "the duplicates to be dropped", func() bool { return b.srv.Stats().PropagationDrops == drops+2 })
	if st := b.srv.Stats(); st.Presences != 1 || st.Propagated != 0 {
		t.Fatalf("%+v", st) // hops 3 = limit: not passed on
	}

	// A device here looking for that key is referred to where the
	// record came from (the first board on its path).
	ic := dial(t, b)
	ic.send(intentEnv(t, newIntent(t, newKey(t), k.Public(), clk.Now()), "i"))
	ic.expectAck("i")
	if r := ic.expect(wire.KindReferral); r.Board != "ws://origin.example/" || r.Role != wire.RoleInitiator {
		t.Fatalf("referral %s", wire.Marshal(r))
	}

	// An intent from a neighbour toward a device connected here refers
	// the device to the intent's board.
	dk, ik := newKey(t), newKey(t)
	dc := dial(t, b)
	present(t, dc, b, dk, nil, "")
	n.write(wire.Marshal(propagateEnv(t, "intent", newIntent(t, ik, dk.Public(), clk.Now()), 1, fake)))
	r := dc.expect(wire.KindReferral)
	if r.Board != fake || r.Role != wire.RoleResponder || r.CounterpartyKey != b64(ik) {
		t.Fatalf("referral %s", wire.Marshal(r))
	}
	// The intent goes on to the other neighbour, not back to the one
	// it came from; the local presence (no scope) goes nowhere.
	fwd := n2.expect(wire.KindPropagate)
	if fwd.RecordKind != "intent" || *fwd.Hops != 2 || len(fwd.Path) != 2 || fwd.Path[0] != fake || fwd.Path[1] != b.url {
		t.Fatalf("forwarded %s", wire.Marshal(fwd))
	}
	n.expectQuiet(quiet)
	n2.expectQuiet(0)
	if rejected.Load() != 0 {
		t.Fatal("a rejection was sent")
	}
}

// TestNeighbourReceivesScopedRecords: a board passes on what a
// neighbour may have, with hops and path filled in.
func TestNeighbourReceivesScopedRecords(t *testing.T) {
	t.Parallel()
	const fake = "ws://fake-neighbour.example/"
	tb := newTestBoard(t)
	b := tb.start(t, Options{PublicURL: tb.url})
	n := dialNeighbour(t, b, fake)
	k := newKey(t)
	present(t, dial(t, b), b, k, nil, "")
	p := present(t, dial(t, b), b, newKey(t), []string{fake}, "")
	e := n.expect(wire.KindPropagate)
	if e.RecordKind != "presence" || *e.Hops != 1 || len(e.Path) != 1 || e.Path[0] != b.url {
		t.Fatalf("propagate %s", wire.Marshal(e))
	}
	var got wire.Presence
	if err := json.Unmarshal(e.Record, &got); err != nil || got.SessionNonce != p.SessionNonce || got.Signature != p.Signature {
		t.Fatalf("record %s", e.Record)
	}
	in := newIntent(t, newKey(t), newKey(t).Public(), b.now())
	c := dial(t, b)
	c.send(intentEnv(t, in, "i"))
	c.expectAck("i")
	if e := n.expect(wire.KindPropagate); e.RecordKind != "intent" || !json.Valid(e.Record) {
		t.Fatalf("propagate %s", wire.Marshal(e))
	}
	// A rejected record is not passed on.
	bad := newPresence(t, newKey(t), b.now(), []string{fake}, "")
	bad.Signature = flipSig(bad.Signature, 3)
	c.send(presenceEnv(t, bad, "bad"))
	c.expectRejected("bad_signature")
	n.expectQuiet(quiet)
}

// TestSelfLink: a connection that claims to be this board is cut.
func TestSelfLink(t *testing.T) {
	t.Parallel()
	tb := newTestBoard(t)
	b := tb.start(t, Options{PublicURL: tb.url})
	c := dialRaw(t, b.url, nil, true)
	c.expect(wire.KindHello)
	c.send(&wire.Envelope{Kind: wire.KindPeerHello, Board: b.url})
	c.expectClosed(nil, -1)
	eventually(t, "the board to forget it", func() bool { return b.srv.Stats().Connections == 0 })
	if st := b.srv.Stats(); st.Neighbors != 0 {
		t.Fatalf("%+v", st)
	}
}

// TestNeighbourRateLimitedSilently: the per-connection limit applies to
// neighbours too, but even its refusals are never sent to a board.
func TestNeighbourRateLimitedSilently(t *testing.T) {
	t.Parallel()
	tb := newTestBoard(t)
	var rejected atomic.Int64
	b := tb.start(t, Options{PublicURL: tb.url, ConnRate: 0.001, ConnBurst: 2, Tap: func(in bool, msg []byte) {
		var h struct{ Kind string }
		if !in && json.Unmarshal(msg, &h) == nil && h.Kind == wire.KindRejected {
			rejected.Add(1)
		}
	}})
	n := dialNeighbour(t, b, "ws://fake-neighbour.example/") // one message
	for range 4 {
		n.write([]byte("junk"))
	}
	eventually(t, "the messages to be refused", func() bool {
		st := b.srv.Stats()
		return st.PropagationDrops == 1 && st.Rejected["rate_limited"] == 3
	})
	n.expectQuiet(quiet)
	if rejected.Load() != 0 {
		t.Fatalf("%d rejections sent to a neighbour", rejected.Load())
	}
}
