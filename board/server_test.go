package board

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyhole-p2p/keyhole/board/wire"
)

func TestNewChecksURLs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"no peers, no URL", Options{}, true},
		{"own URL only", Options{PublicURL: "wss://board.example/"}, true},
		{"peers without own URL", Options{Peers: []string{"ws://127.0.0.1:1/"}}, false},
		{"http own URL", Options{PublicURL: "http://board.example/"}, false},
		{"https peer", Options{PublicURL: "ws://127.0.0.1:1/", Peers: []string{"https://peer.example/"}}, false},
		{"bare host peer", Options{PublicURL: "ws://127.0.0.1:1/", Peers: []string{"peer.example"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.opts)
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok=%v", err, tc.ok)
			}
			if s != nil {
				s.Close()
			}
		})
	}
}

func TestHello(t *testing.T) {
	t.Parallel()
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		c := dial(t, startBoard(t, Options{}))
		h := c.hello
		if h.Version != 1 || h.PoWBits == nil || *h.PoWBits != 0 || h.MaxFrame != 64<<10 || h.FreshnessMS != 120000 || len(h.STUN) != 0 {
			t.Fatalf("hello %s", wire.Marshal(h))
		}
	})
	t.Run("options", func(t *testing.T) {
		t.Parallel()
		c := dial(t, startBoard(t, Options{MaxFrame: 4096, Freshness: 30 * time.Second, STUN: []string{"stun:stun.example:3478"}, STUNPort: 3479}))
		h := c.hello
		if h.MaxFrame != 4096 || h.FreshnessMS != 30000 {
			t.Fatalf("hello %s", wire.Marshal(h))
		}
		// The board's own STUN port is offered under the name the
		// device used to reach it.
		if len(h.STUN) != 2 || h.STUN[0] != "stun:stun.example:3478" || h.STUN[1] != "stun:127.0.0.1:3479" {
			t.Fatalf("stun %q", h.STUN)
		}
	})
}

// TestMatchAndComplete: the whole happy path of one channel, and what the
// board forgets afterwards.
func TestMatchAndComplete(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{ChannelTTL: 10 * time.Second, MaxChannelsPerKey: 1})
	p := matchPair(t, b)
	st := b.srv.Stats()
	if st.Channels != 1 || st.ChannelsOpened != 1 || st.Presences != 1 || st.Intents != 0 || st.Matched != 1 {
		t.Fatalf("after the match: %+v", st)
	}
	p.keyPhase(t)
	p.pass(t, wire.FrameOffer, wire.PhaseSignaling)
	if b.srv.Stats().Channels != 1 {
		t.Fatal("the channel ended before the signaling answer")
	}
	p.pass(t, wire.FrameAnswer, wire.PhaseSignaling)
	expectChannelClosed(t, p.rc, p.id, "complete")
	expectChannelClosed(t, p.ic, p.id, "complete")
	// Later frames find no channel, from either side.
	p.ic.send(relayEnv(t, p.frame(t, wire.FrameOffer, wire.PhaseSignaling), "late"))
	p.ic.expectRejected("no_channel")
	p.rc.send(relayEnv(t, p.frame(t, wire.FrameAnswer, wire.PhaseSignaling), "late"))
	p.rc.expectRejected("no_channel")
	st = b.srv.Stats()
	if st.Channels != 0 || st.Completed != 1 || st.Relayed != 4 || st.TimedOut != 0 || st.Rejected["no_channel"] != 2 {
		t.Fatalf("after completion: %+v", st)
	}
	// The per-key channel count was released: with a cap of one the
	// same two keys can meet again.
	p.ic.send(intentEnv(t, newIntent(t, p.ik, p.rk.Public(), b.now()), "again"))
	p.ic.expectAck("again")
	if m := p.ic.expect(wire.KindMatch); m.MatchID == p.id {
		t.Fatal("a match_id was reused")
	}
	p.rc.expect(wire.KindMatch)
}

// TestMatchExpiryUsesBoardClock: expires_in_ms is counted on the board's
// clock (Options.Now), like the deadline it describes.
func TestMatchExpiryUsesBoardClock(t *testing.T) {
	t.Parallel()
	clk := newClock()
	b := startBoard(t, Options{Now: clk.Now, ChannelTTL: 7 * time.Second})
	p := &pair{b: b, ik: newKey(t), rk: newKey(t)}
	p.rc = dial(t, b)
	present(t, p.rc, b, p.rk, nil, "")
	p.ic = dial(t, b)
	p.ic.send(intentEnv(t, newIntent(t, p.ik, p.rk.Public(), b.now()), "i"))
	p.ic.expectAck("i")
	for _, c := range []*rawClient{p.ic, p.rc} {
		m := c.expect(wire.KindMatch)
		if m.ExpiresInMS == nil || *m.ExpiresInMS != 7000 {
			t.Fatalf("expires_in_ms %v, want 7000 on a frozen clock", m.ExpiresInMS)
		}
	}
}

func TestIntentWaitsThenMatched(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{})
	ik, rk := newKey(t), newKey(t)
	ic := dial(t, b)
	ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
	ic.expectAck("i")
	ic.expectQuiet(quiet)
	if st := b.srv.Stats(); st.Intents != 1 || st.Presences != 0 || st.Channels != 0 {
		t.Fatalf("waiting: %+v", st)
	}
	rc := dial(t, b)
	present(t, rc, b, rk, nil, "")
	mr := rc.expect(wire.KindMatch)
	mi := ic.expect(wire.KindMatch)
	if mr.Role != wire.RoleResponder || mi.Role != wire.RoleInitiator || mr.MatchID != mi.MatchID || mi.CounterpartyKey != b64(rk) {
		t.Fatalf("matches %s / %s", wire.Marshal(mi), wire.Marshal(mr))
	}
	if st := b.srv.Stats(); st.Intents != 0 || st.Presences != 1 || st.Channels != 1 || st.Matched != 1 {
		t.Fatalf("matched: %+v", st)
	}
}

func TestIntentTowardOwnKeyRefused(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{})
	k := newKey(t)
	c := dial(t, b)
	present(t, c, b, k, nil, "")
	in := newIntent(t, k, k.Public(), b.now())
	c.send(intentEnv(t, in, "self"))
	if e := c.expectRejected("bad_message"); e.Req != "self" {
		t.Fatalf("req %q", e.Req)
	}
	if st := b.srv.Stats(); st.Channels != 0 || st.Intents != 0 {
		t.Fatalf("%+v", st)
	}
}

func TestPresenceRefreshSupersedes(t *testing.T) {
	t.Parallel()
	t.Run("from another connection", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{})
		rk, ik := newKey(t), newKey(t)
		old, cur := dial(t, b), dial(t, b)
		p1 := present(t, old, b, rk, nil, "")
		present(t, cur, b, rk, nil, "")
		e := old.expect(wire.KindEvicted)
		if e.Reason != "superseded" || e.RecordKind != "presence" || e.SessionNonce != p1.SessionNonce {
			t.Fatalf("evicted %s", wire.Marshal(e))
		}
		if st := b.srv.Stats(); st.Presences != 1 || st.Superseded != 1 || st.EvictedCapacity != 0 {
			t.Fatalf("%+v", st)
		}
		// The index points to the new presence: the match goes to
		// the new connection, the old one hears nothing.
		ic := dial(t, b)
		ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
		ic.expectAck("i")
		ic.expect(wire.KindMatch)
		cur.expect(wire.KindMatch)
		old.expectQuiet(quiet)
	})
	t.Run("from the same connection", func(t *testing.T) {
		t.Parallel()
		b := startBoard(t, Options{})
		k := newKey(t)
		c := dial(t, b)
		p1 := present(t, c, b, k, nil, "")
		p2 := newPresence(t, k, b.now(), nil, "")
		c.send(presenceEnv(t, p2, "p2"))
		if e := c.expect(wire.KindEvicted); e.Reason != "superseded" || e.SessionNonce != p1.SessionNonce {
			t.Fatalf("evicted %s", wire.Marshal(e))
		}
		c.expectAck("p2")
		if st := b.srv.Stats(); st.Presences != 1 || st.Superseded != 1 {
			t.Fatalf("%+v", st)
		}
	})
}

// TestCapacityEvictionOldestOut: a table of three entries pushes out the
// oldest entry, presence or intent, and tells its owner.
func TestCapacityEvictionOldestOut(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{Memory: FixedMemory(3 * entryCost)})
	if b.srv.Stats().Capacity != 3 {
		t.Fatalf("capacity %d", b.srv.Stats().Capacity)
	}
	var cs []*rawClient
	var ps []*wire.Presence
	for range 3 {
		k := newKey(t)
		c := dial(t, b)
		ps = append(ps, present(t, c, b, k, nil, ""))
		cs = append(cs, c)
	}
	// A fourth presence evicts the first.
	c4 := dial(t, b)
	present(t, c4, b, newKey(t), nil, "")
	e := cs[0].expect(wire.KindEvicted)
	if e.Reason != "capacity" || e.RecordKind != "presence" || e.SessionNonce != ps[0].SessionNonce {
		t.Fatalf("evicted %s", wire.Marshal(e))
	}
	cs[1].expectQuiet(quiet)
	// An intent toward an absent key evicts the (new) oldest, the
	// second presence.
	ik := newKey(t)
	ic := dial(t, b)
	in := newIntent(t, ik, newKey(t).Public(), b.now())
	ic.send(intentEnv(t, in, "i"))
	ic.expectAck("i")
	if e := cs[1].expect(wire.KindEvicted); e.SessionNonce != ps[1].SessionNonce || e.Reason != "capacity" {
		t.Fatalf("evicted %s", wire.Marshal(e))
	}
	// Three more presences push the intent out too: the table is
	// [p3 p4 intent], then [p4 intent p5], [intent p5 p6], [p5 p6 p7].
	for range 3 {
		present(t, dial(t, b), b, newKey(t), nil, "")
	}
	if e := ic.expect(wire.KindEvicted); e.RecordKind != "intent" || e.SessionNonce != in.SessionNonce || e.Reason != "capacity" {
		t.Fatalf("evicted %s", wire.Marshal(e))
	}
	st := b.srv.Stats()
	if st.Presences+st.Intents != 3 || st.EvictedCapacity != 5 || st.Superseded != 0 {
		t.Fatalf("%+v", st)
	}
}

// TestDroppedPresenceStaysMatchable: a device whose connection dropped
// can still be found; the channel waits, holding the initiator's key
// offer, until the device presents again.
func TestDroppedPresenceStaysMatchable(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{ChannelTTL: 10 * time.Second})
	ik, rk := newKey(t), newKey(t)
	gone := dial(t, b)
	present(t, gone, b, rk, nil, "")
	gone.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, "the board to forget the connection", func() bool { return b.srv.Stats().Connections == 0 })
	if b.srv.Stats().Presences != 1 {
		t.Fatal("the presence left with its connection")
	}
	ic := dial(t, b)
	ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
	ic.expectAck("i")
	m := ic.expect(wire.KindMatch)
	p := &pair{b: b, ik: ik, rk: rk, ic: ic, id: m.MatchID}
	offer := p.frame(t, wire.FrameOffer, wire.PhaseKey)
	oenv := relayEnv(t, offer, "o")
	ic.send(oenv)
	ic.expectAck("o")
	ic.expectQuiet(quiet)

	rc := dial(t, b)
	rp := newPresence(t, rk, b.now(), nil, "")
	rc.send(presenceEnv(t, rp, "back"))
	rc.expectAck("back")
	mr := rc.expect(wire.KindMatch)
	if mr.MatchID != m.MatchID || mr.Role != wire.RoleResponder || mr.CounterpartyKey != b64(ik) {
		t.Fatalf("match %s", wire.Marshal(mr))
	}
	if *mr.ExpiresInMS > 10000 || *mr.ExpiresInMS <= 0 {
		t.Fatalf("expires_in_ms %d", *mr.ExpiresInMS)
	}
	held := rc.expect(wire.KindRelay)
	if held.MatchID != m.MatchID || held.FrameKind != wire.FrameOffer || string(held.Blob) != string(oenv.Blob) {
		t.Fatalf("held offer %s", wire.Marshal(held))
	}
	p.rc = rc
	p.pass(t, wire.FrameAnswer, wire.PhaseKey)
	p.pass(t, wire.FrameOffer, wire.PhaseSignaling)
	p.pass(t, wire.FrameAnswer, wire.PhaseSignaling)
	expectChannelClosed(t, rc, p.id, "complete")
	expectChannelClosed(t, ic, p.id, "complete")
}

// TestIntentOfDepartedInitiator: an intent whose sender left does not
// make a channel when its target arrives; it is simply done.
func TestIntentOfDepartedInitiator(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{})
	ik, rk := newKey(t), newKey(t)
	ic := dial(t, b)
	ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
	ic.expectAck("i")
	ic.ws.Close(websocket.StatusNormalClosure, "")
	eventually(t, "the board to forget the connection", func() bool { return b.srv.Stats().Connections == 0 })
	rc := dial(t, b)
	present(t, rc, b, rk, nil, "")
	rc.expectQuiet(quiet)
	if st := b.srv.Stats(); st.Intents != 0 || st.ChannelsOpened != 0 || st.Presences != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestChannelTimeout(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	b := startBoard(t, Options{ChannelTTL: ttl, MaxChannelsPerKey: 1})
	start := time.Now()
	p := matchPair(t, b)
	p.pass(t, wire.FrameOffer, wire.PhaseKey)
	expectChannelClosed(t, p.ic, p.id, "timeout")
	expectChannelClosed(t, p.rc, p.id, "timeout")
	if el := time.Since(start); el < ttl || el > ttl+3*time.Second {
		t.Fatalf("closed after %s, TTL %s", el, ttl)
	}
	p.rc.send(relayEnv(t, p.frame(t, wire.FrameAnswer, wire.PhaseKey), "late"))
	p.rc.expectRejected("no_channel")
	st := b.srv.Stats()
	if st.TimedOut != 1 || st.Channels != 0 || st.Completed != 0 {
		t.Fatalf("%+v", st)
	}
	// The per-key cap was released.
	p.ic.send(intentEnv(t, newIntent(t, p.ik, p.rk.Public(), b.now()), "again"))
	p.ic.expectAck("again")
	p.ic.expect(wire.KindMatch)
}

func TestChannelPeerGone(t *testing.T) {
	t.Parallel()
	for _, who := range []string{"initiator", "responder"} {
		t.Run(who+" leaves", func(t *testing.T) {
			t.Parallel()
			b := startBoard(t, Options{})
			p := matchPair(t, b)
			p.keyPhase(t)
			leaving, staying := p.ic, p.rc
			if who == "responder" {
				leaving, staying = p.rc, p.ic
			}
			leaving.ws.Close(websocket.StatusNormalClosure, "")
			expectChannelClosed(t, staying, p.id, "peer_gone")
			eventually(t, "the channel count", func() bool { return b.srv.Stats().Channels == 0 })
			if st := b.srv.Stats(); st.PeerGone != 1 || st.TimedOut != 0 {
				t.Fatalf("%+v", st)
			}
		})
	}
}

// TestCloseShutsDown: Close ends channels and connections promptly and
// the board then refuses upgrades.
func TestCloseShutsDown(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{})
	p := matchPair(t, b)
	idle := dial(t, b)
	done := make(chan struct{})
	go func() { b.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close hung")
	}
	shutdownOnly := func(e *wire.Envelope) bool {
		return e.Kind == wire.KindChannelClosed && e.Reason == "shutdown" && e.MatchID == p.id
	}
	// The board says goodbye: what was queued (channel_closed
	// "shutdown"), then close status 1001.
	for _, c := range []*rawClient{p.ic, p.rc, idle} {
		c.expectClosed(shutdownOnly, websocket.StatusGoingAway)
	}
	if err := b.srv.Close(); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, b.http+"/", nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade after Close: %s", resp.Status)
	}
	if st := b.srv.Stats(); st.Channels != 0 || st.Connections != 0 {
		t.Fatalf("%+v", st)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{})
	get := func(t *testing.T, path, accept string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, b.http+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp, sb.String()
	}
	getJSON := func(t *testing.T, path, accept string) (Stats, string) {
		t.Helper()
		resp, body := get(t, path, accept)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s %s: %s %q", path, accept, resp.Status, resp.Header)
		}
		var st Stats
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return st, body
	}

	st, _ := getJSON(t, "/status", "application/json")
	if st.Connections != 0 || st.Presences != 0 || st.Channels != 0 {
		t.Fatalf("empty board: %+v", st)
	}

	// Activity: a match with a push token, a waiting intent and a
	// rejection.
	pk, ik := newKey(t), newKey(t)
	rc := dial(t, b)
	pres := present(t, rc, b, pk, nil, "https://push.example/up/statuscheck-token")
	ic := dial(t, b)
	in := newIntent(t, ik, pk.Public(), b.now())
	ic.send(intentEnv(t, in, "i"))
	ic.expectAck("i")
	m := ic.expect(wire.KindMatch)
	wk := newKey(t)
	wait := newIntent(t, wk, newKey(t).Public(), b.now())
	ic.send(intentEnv(t, wait, "w"))
	ic.expectAck("w")
	ic.write([]byte(`{"kind":"bogus"}`))
	ic.expectRejected("bad_message")

	secrets := []string{b64(pk), b64(ik), b64(wk), pk.Public().String(), ik.Public().Hex(), pres.SessionNonce, pres.Signature,
		in.SessionNonce, in.Signature, wait.SessionNonce, m.MatchID, "statuscheck-token", wait.TargetKey}

	for _, v := range []struct{ path, accept string }{
		{"/status", "application/json"},
		{"/status?format=json", ""},
		{"/?format=json", "text/html"},
		{"/status", "text/html, application/json;q=0.9"},
	} {
		st, body := getJSON(t, v.path, v.accept)
		if st.Connections != 2 || st.Presences != 1 || st.Intents != 1 || st.Channels != 1 || st.ChannelsOpened != 1 || st.Rejected["bad_message"] != 1 {
			t.Fatalf("%s: %+v", v.path, st)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Fatalf("%s shows %q", v.path, s)
			}
		}
	}
	for _, path := range []string{"/status", "/"} {
		resp, body := get(t, path, "text/html,application/xhtml+xml")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: %s %q", path, resp.Status, resp.Header)
		}
		for _, want := range []string{"<td>presences waiting</td><td>1</td>", "<td>open channels</td><td>1</td>", "<td>connections</td><td>2</td>", "rejected: bad_message"} {
			if !strings.Contains(body, want) {
				t.Fatalf("%s lacks %q:\n%s", path, want, body)
			}
		}
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Fatalf("%s shows %q", path, s)
			}
		}
	}
	// Counts follow the board: the responder leaves, the channel goes.
	rc.ws.Close(websocket.StatusNormalClosure, "")
	ic.expect(wire.KindChannelClosed)
	eventually(t, "the status to follow", func() bool {
		st, _ := getJSON(t, "/status", "application/json")
		return st.Connections == 1 && st.Channels == 0 && st.PeerGone == 1
	})

	resp, _ := get(t, "/nowhere", "")
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("/nowhere: %s", resp.Status)
	}
	resp, err := http.Post(b.http+"/status", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /status: %s %q", resp.Status, resp.Header)
	}
	resp, err = http.Head(b.http + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HEAD: %s", resp.Status)
	}
}

// TestWaitingChannelsAttachTogether: two initiators reach an offline
// device; when it presents again it gets both matches, each with its
// own held key offer.
func TestWaitingChannelsAttachTogether(t *testing.T) {
	t.Parallel()
	b := startBoard(t, Options{ChannelTTL: 10 * time.Second})
	rk := newKey(t)
	gone := dial(t, b)
	present(t, gone, b, rk, nil, "")
	gone.ws.CloseNow()
	eventually(t, "the disconnect", func() bool { return b.srv.Stats().Connections == 0 })
	offers := map[string]string{} // match id -> blob
	for range 2 {
		ik := newKey(t)
		ic := dial(t, b)
		ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
		ic.expectAck("i")
		id := ic.expect(wire.KindMatch).MatchID
		e := relayEnv(t, newFrame(t, ik, rk.Public(), id, wire.FrameOffer, wire.PhaseKey, b.now()), "o")
		ic.send(e)
		ic.expectAck("o")
		offers[id] = string(e.Blob)
	}
	rc := dial(t, b)
	present(t, rc, b, rk, nil, "")
	for range 2 {
		m := rc.expect(wire.KindMatch)
		r := rc.expect(wire.KindRelay)
		if r.MatchID != m.MatchID || offers[m.MatchID] != string(r.Blob) {
			t.Fatalf("match %s with offer for %s", m.MatchID, r.MatchID)
		}
		delete(offers, m.MatchID)
	}
	rc.expectQuiet(quiet)
	if len(offers) != 0 {
		t.Fatalf("unmatched: %v", offers)
	}
}
