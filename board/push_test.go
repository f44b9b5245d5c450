package board

// Push wake (ORP-009): one contentless push to the responder's newest
// push endpoint when its channel times out; never otherwise; and a
// pusher that fails, panics or hangs cannot hold anything up.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
)

// fakePusher records every call and then behaves as mode says: "ok",
// "error", "panic" or "hang" (until its context ends).
type fakePusher struct {
	mode  string
	calls chan string
}

func newFakePusher(mode string) *fakePusher {
	return &fakePusher{mode: mode, calls: make(chan string, 128)}
}

func (p *fakePusher) Push(ctx context.Context, endpoint string) error {
	p.calls <- endpoint
	switch p.mode {
	case "error":
		return fmt.Errorf("%w: %s", errPushFailed, endpoint)
	case "panic":
		panic("push exploded for " + endpoint)
	case "hang":
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// expectCall waits for one push and checks its endpoint.
func (p *fakePusher) expectCall(t testing.TB, endpoint string) {
	t.Helper()
	select {
	case got := <-p.calls:
		if got != endpoint {
			t.Fatalf("pushed to %q, want %q", got, endpoint)
		}
	case <-time.After(waitLong):
		t.Fatalf("no push to %s", endpoint)
	}
}

// expectNoCall: no push arrives within d.
func (p *fakePusher) expectNoCall(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case got := <-p.calls:
		t.Fatalf("unexpected push to %q", got)
	case <-time.After(d):
	}
}

// timedOutPair matches a responder whose presence carries token and
// waits for the channel to time out, checking it does so on time.
func timedOutPair(t testing.TB, b *testBoard, ttl time.Duration, token string) *pair {
	t.Helper()
	p := &pair{b: b, ik: newKey(t), rk: newKey(t)}
	p.rc = dial(t, b)
	present(t, p.rc, b, p.rk, nil, token)
	p.ic = dial(t, b)
	start := time.Now() // the channel's timer starts later than this
	p.ic.send(intentEnv(t, newIntent(t, p.ik, p.rk.Public(), b.now()), "i"))
	p.ic.expectAck("i")
	p.id = p.ic.expect(wire.KindMatch).MatchID
	p.rc.expect(wire.KindMatch)
	expectChannelClosed(t, p.ic, p.id, "timeout")
	expectChannelClosed(t, p.rc, p.id, "timeout")
	if el := time.Since(start); el < ttl || el > ttl+2*time.Second {
		t.Fatalf("timed out after %s, TTL %s", el, ttl)
	}
	return p
}

// TestPushOnTimeout: whatever the pusher does, the timeout is on time,
// counted, the push fires exactly once, the board goes on working and
// Close returns.
func TestPushOnTimeout(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	for _, mode := range []string{"ok", "error", "panic", "hang"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			pusher := newFakePusher(mode)
			b := startBoard(t, Options{ChannelTTL: ttl, Pusher: pusher})
			token := "https://push.example/up/" + mode
			timedOutPair(t, b, ttl, token)
			if st := b.srv.Stats(); st.TimedOut != 1 || st.Channels != 0 {
				t.Fatalf("%+v", st)
			}
			pusher.expectCall(t, token)
			switch mode {
			case "ok":
				eventually(t, "the push to be counted", func() bool { return b.srv.Stats().PushesSent == 1 })
			case "error", "panic":
				eventually(t, "the failure to be counted", func() bool { return b.srv.Stats().PushesFailed == 1 })
			}
			// The board still works, channels still time out.
			timedOutPair(t, b, ttl, "")
			pusher.expectNoCall(t, quiet)
			closed := make(chan struct{})
			go func() { b.srv.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(3 * time.Second):
				t.Fatal("Close waited for the pusher")
			}
			st := b.srv.Stats()
			want := map[string][2]int{"ok": {1, 0}, "error": {0, 1}, "panic": {0, 1}, "hang": {0, 1}}[mode]
			if st.PushesSent != want[0] || st.PushesFailed != want[1] || st.TimedOut != 2 {
				t.Fatalf("%+v", st)
			}
		})
	}
}

func TestPushNeverOnCompletion(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	pusher := newFakePusher("ok")
	b := startBoard(t, Options{ChannelTTL: ttl, Pusher: pusher})
	p := &pair{b: b, ik: newKey(t), rk: newKey(t)}
	p.rc = dial(t, b)
	present(t, p.rc, b, p.rk, nil, "https://push.example/up/done")
	p.ic = dial(t, b)
	p.ic.send(intentEnv(t, newIntent(t, p.ik, p.rk.Public(), b.now()), "i"))
	p.ic.expectAck("i")
	p.id = p.ic.expect(wire.KindMatch).MatchID
	p.rc.expect(wire.KindMatch)
	p.keyPhase(t)
	p.pass(t, wire.FrameOffer, wire.PhaseSignaling)
	p.pass(t, wire.FrameAnswer, wire.PhaseSignaling)
	expectChannelClosed(t, p.ic, p.id, "complete")
	pusher.expectNoCall(t, ttl+200*time.Millisecond)
	p.ic.expectQuiet(0) // and no late timeout
	if st := b.srv.Stats(); st.PushesSent != 0 || st.PushesFailed != 0 || st.TimedOut != 0 || st.Completed != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestPushNeverOnPeerGone(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	pusher := newFakePusher("ok")
	b := startBoard(t, Options{ChannelTTL: ttl, Pusher: pusher})
	p := &pair{b: b, ik: newKey(t), rk: newKey(t)}
	p.rc = dial(t, b)
	present(t, p.rc, b, p.rk, nil, "https://push.example/up/gone")
	p.ic = dial(t, b)
	p.ic.send(intentEnv(t, newIntent(t, p.ik, p.rk.Public(), b.now()), "i"))
	p.ic.expectAck("i")
	p.id = p.ic.expect(wire.KindMatch).MatchID
	p.ic.ws.CloseNow()
	p.rc.expect(wire.KindMatch)
	expectChannelClosed(t, p.rc, p.id, "peer_gone")
	pusher.expectNoCall(t, ttl+200*time.Millisecond)
}

func TestPushNeverWithoutToken(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	pusher := newFakePusher("ok")
	b := startBoard(t, Options{ChannelTTL: ttl, Pusher: pusher})
	timedOutPair(t, b, ttl, "")
	pusher.expectNoCall(t, quiet)
	if st := b.srv.Stats(); st.PushesSent != 0 || st.PushesFailed != 0 || st.TimedOut != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestPushWithoutPusherIsNoop(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	b := startBoard(t, Options{ChannelTTL: ttl})
	timedOutPair(t, b, ttl, "https://push.example/up/nobody")
	time.Sleep(quiet)
	if st := b.srv.Stats(); st.PushesSent != 0 || st.PushesFailed != 0 || st.TimedOut != 1 {
		t.Fatalf("%+v", st)
	}
	present(t, dial(t, b), b, newKey(t), nil, "")
}

// TestPushUsesNewestPresence: the endpoint is read from the responder's
// newest presence when the channel times out.
func TestPushUsesNewestPresence(t *testing.T) {
	t.Parallel()
	const ttl = 500 * time.Millisecond
	cases := []struct {
		name string
		// refresh runs after the match; it may replace the presence.
		before, after string // tokens of a refresh before / after the match ("-": none)
		capacity      bool   // push the presence out of the table instead
		want          string // "": no push
	}{
		{"superseded before the match", "https://push.example/up/new", "-", false, "https://push.example/up/new"},
		{"superseded during the channel", "-", "https://push.example/up/newer", false, "https://push.example/up/newer"},
		{"refreshed without a token", "-", "", false, ""},
		{"evicted by capacity", "-", "-", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pusher := newFakePusher("ok")
			opts := Options{ChannelTTL: ttl, Pusher: pusher}
			if tc.capacity {
				opts.Memory = FixedMemory(2 * entryCost)
			}
			b := startBoard(t, opts)
			rk, ik := newKey(t), newKey(t)
			rc := dial(t, b)
			present(t, rc, b, rk, nil, "https://push.example/up/old")
			if tc.before != "-" {
				rc2 := dial(t, b)
				present(t, rc2, b, rk, nil, tc.before)
				rc.expect(wire.KindEvicted)
				rc = rc2
			}
			ic := dial(t, b)
			ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
			ic.expectAck("i")
			id := ic.expect(wire.KindMatch).MatchID
			rc.expect(wire.KindMatch)
			if tc.after != "-" {
				rc.send(presenceEnv(t, newPresence(t, rk, b.now(), nil, tc.after), "r"))
				rc.expect(wire.KindEvicted)
				rc.expectAck("r")
			}
			if tc.capacity {
				present(t, dial(t, b), b, newKey(t), nil, "")
				present(t, dial(t, b), b, newKey(t), nil, "")
				if e := rc.expect(wire.KindEvicted); e.Reason != "capacity" {
					t.Fatalf("evicted %s", wire.Marshal(e))
				}
			}
			expectChannelClosed(t, ic, id, "timeout")
			if tc.want == "" {
				pusher.expectNoCall(t, quiet)
				return
			}
			pusher.expectCall(t, tc.want)
			pusher.expectNoCall(t, quiet)
		})
	}
}

// TestPushConcurrencyBound: at most 32 pushes are in flight; past that
// a wake-up is dropped and counted, and nothing waits.
func TestPushConcurrencyBound(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	const n = 33
	pusher := newFakePusher("hang")
	logs := &syncBuffer{}
	b := startBoard(t, Options{ChannelTTL: ttl, Pusher: pusher, MaxChannelsPerKey: 100, MatchBurst: 100, AnnounceBurst: 100,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ik := newKey(t)
	ic := dial(t, b)
	var targets []identity.PublicKey
	for i := range n {
		rk := newKey(t)
		present(t, dial(t, b), b, rk, nil, fmt.Sprintf("https://push.example/up/%d", i))
		targets = append(targets, rk.Public())
	}
	for _, rk := range targets {
		ic.send(intentEnv(t, newIntent(t, ik, rk, b.now()), "i"))
	}
	// Early channels may time out while later ones open: count the
	// kinds in any order.
	kinds := map[string]int{}
	for range 3 * n {
		kinds[ic.next().Kind]++
	}
	if kinds[wire.KindAck] != n || kinds[wire.KindMatch] != n || kinds[wire.KindChannelClosed] != n {
		t.Fatalf("initiator got %v", kinds)
	}
	eventually(t, "one wake-up to be dropped", func() bool { return b.srv.Stats().PushesFailed == 1 })
	for range n - 1 {
		select {
		case <-pusher.calls:
		case <-time.After(waitLong):
			t.Fatal("fewer pushes in flight than the bound")
		}
	}
	pusher.expectNoCall(t, quiet)
	if st := b.srv.Stats(); st.TimedOut != n || st.PushesSent != 0 {
		t.Fatalf("%+v", st)
	}
	if !strings.Contains(logs.String(), "too many push requests") {
		t.Fatalf("log: %s", logs.String())
	}
	done := make(chan struct{})
	go func() { b.srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waited for hung pushes")
	}
	if st := b.srv.Stats(); st.PushesFailed != n {
		t.Fatalf("%+v", st)
	}
}

// pushSink is a loopback push service that records requests.
type pushSink struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []pushReq
	got  chan struct{}
}

type pushReq struct {
	method, path, ttl, urgency string
	length                     int64
	body                       []byte
}

func newPushSink(t testing.TB, tls bool, h http.HandlerFunc) *pushSink {
	s := &pushSink{got: make(chan struct{}, 64)}
	record := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, pushReq{r.Method, r.URL.Path, r.Header.Get("TTL"), r.Header.Get("Urgency"), r.ContentLength, body})
		s.mu.Unlock()
		s.got <- struct{}{}
		if h != nil {
			h(w, r)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}
	if tls {
		s.srv = httptest.NewTLSServer(http.HandlerFunc(record))
	} else {
		s.srv = httptest.NewServer(http.HandlerFunc(record))
	}
	t.Cleanup(s.srv.Close)
	return s
}

func (s *pushSink) requests() []pushReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pushReq(nil), s.reqs...)
}

// TestHTTPPusherOnBoard: the real pusher against a loopback push
// service: one empty POST to the device's endpoint on timeout.
func TestHTTPPusherOnBoard(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	t.Run("allowed", func(t *testing.T) {
		t.Parallel()
		sink := newPushSink(t, false, nil)
		b := startBoard(t, Options{ChannelTTL: ttl, Pusher: &HTTPPusher{AllowPrivate: true}})
		timedOutPair(t, b, ttl, sink.srv.URL+"/up/device-1")
		eventually(t, "the push to be counted", func() bool { return b.srv.Stats().PushesSent == 1 })
		time.Sleep(quiet)
		reqs := sink.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d push requests", len(reqs))
		}
		r := reqs[0]
		if r.method != http.MethodPost || r.path != "/up/device-1" || r.length != 0 || len(r.body) != 0 || r.ttl != "60" {
			t.Fatalf("push request %+v", r)
		}
	})
	t.Run("private endpoint refused", func(t *testing.T) {
		t.Parallel()
		sink := newPushSink(t, false, nil)
		b := startBoard(t, Options{ChannelTTL: ttl, Pusher: &HTTPPusher{}})
		timedOutPair(t, b, ttl, sink.srv.URL+"/up/device-2")
		eventually(t, "the refusal to be counted", func() bool { return b.srv.Stats().PushesFailed == 1 })
		if n := len(sink.requests()); n != 0 {
			t.Fatalf("%d requests reached a private endpoint", n)
		}
	})
}

// TestHTTPPusher: the request it sends, and what it refuses to reach.
func TestHTTPPusher(t *testing.T) {
	t.Parallel()
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), waitLong)
		t.Cleanup(cancel)
		return c
	}
	t.Run("empty POST", func(t *testing.T) {
		t.Parallel()
		sink := newPushSink(t, false, nil)
		if err := (&HTTPPusher{AllowPrivate: true}).Push(ctx(t), sink.srv.URL+"/up/x?id=1"); err != nil {
			t.Fatal(err)
		}
		r := sink.requests()
		if len(r) != 1 || r[0].method != http.MethodPost || r[0].length != 0 || len(r[0].body) != 0 || r[0].ttl != "60" || r[0].urgency != "high" || r[0].path != "/up/x" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("http refused", func(t *testing.T) {
		t.Parallel()
		sink := newPushSink(t, false, nil)
		if err := (&HTTPPusher{}).Push(ctx(t), sink.srv.URL+"/up/x"); err == nil || !strings.Contains(err.Error(), "https") {
			t.Fatalf("err %v", err)
		}
		if len(sink.requests()) != 0 {
			t.Fatal("the request was sent")
		}
	})
	t.Run("https loopback refused", func(t *testing.T) {
		t.Parallel()
		sink := newPushSink(t, true, nil)
		if err := (&HTTPPusher{}).Push(ctx(t), sink.srv.URL+"/up/x"); err == nil || !strings.Contains(err.Error(), "non-public") {
			t.Fatalf("err %v", err)
		}
		if len(sink.requests()) != 0 {
			t.Fatal("the request was sent")
		}
	})
	// Push to local addresses a public endpoint must not be: the
	// dialer refuses them before connect(2) (and were it to fail, these
	// stay on this machine).
	for _, host := range []string{"127.0.0.2", "0.0.0.0", "[::ffff:127.0.0.1]", "[::1]", "[fe80::1]"} {
		t.Run("refuses "+host, func(t *testing.T) {
			t.Parallel()
			err := (&HTTPPusher{Timeout: time.Second}).Push(ctx(t), "https://"+host+":9/up/x")
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(host, "[") || strings.HasPrefix(host, "[::ffff:") {
				if !strings.Contains(err.Error(), "non-public") {
					t.Fatalf("err %v", err)
				}
			}
		})
	}
	// The address policy for private ranges, checked without sending a
	// packet anywhere: the pusher's own dialer is asked for a UDP
	// "connection", which only picks a destination.
	for _, addr := range []string{"10.1.2.3:9", "172.16.5.4:9", "192.168.1.1:9", "169.254.169.254:80", "127.0.0.1:9", "0.0.0.0:9", "[fd00::1]:9", "[fe80::1]:9", "[::1]:9"} {
		t.Run("address policy "+addr, func(t *testing.T) {
			t.Parallel()
			dial := (&HTTPPusher{}).newClient().Transport.(*http.Transport).DialContext
			c, err := dial(ctx(t), "udp", addr)
			if err == nil {
				c.Close()
				t.Fatalf("%s allowed", addr)
			}
			if !strings.Contains(err.Error(), "non-public") {
				t.Fatalf("err %v", err)
			}
		})
	}
	t.Run("address policy lifted by AllowPrivate", func(t *testing.T) {
		t.Parallel()
		dial := (&HTTPPusher{AllowPrivate: true}).newClient().Transport.(*http.Transport).DialContext
		c, err := dial(ctx(t), "udp", "127.0.0.2:9")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
	t.Run("bad URL", func(t *testing.T) {
		t.Parallel()
		if err := (&HTTPPusher{AllowPrivate: true}).Push(ctx(t), "https://%zz/"); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("error status", func(t *testing.T) {
		t.Parallel()
		sink := newPushSink(t, false, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) })
		if err := (&HTTPPusher{AllowPrivate: true}).Push(ctx(t), sink.srv.URL+"/up/x"); err == nil || !strings.Contains(err.Error(), "410") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("redirect not followed", func(t *testing.T) {
		t.Parallel()
		sink := newPushSink(t, false, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/up/x" {
				http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			}
		})
		if err := (&HTTPPusher{AllowPrivate: true}).Push(ctx(t), sink.srv.URL+"/up/x"); err == nil {
			t.Fatal("a redirect counted as delivered")
		}
		if r := sink.requests(); len(r) != 1 {
			t.Fatalf("the redirect was followed: %+v", r)
		}
	})
	t.Run("slow endpoint times out", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		sink := newPushSink(t, false, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		defer close(release)
		start := time.Now()
		err := (&HTTPPusher{AllowPrivate: true, Timeout: 100 * time.Millisecond}).Push(ctx(t), sink.srv.URL+"/up/x")
		if err == nil || time.Since(start) > 2*time.Second {
			t.Fatalf("err %v after %s", err, time.Since(start))
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		t.Parallel()
		sink := newPushSink(t, false, nil)
		c, cancel := context.WithCancel(context.Background())
		cancel()
		if err := (&HTTPPusher{AllowPrivate: true}).Push(c, sink.srv.URL+"/up/x"); err == nil {
			t.Fatal("no error")
		}
	})
}

// TestPushWakesOfflineResponder: the case push exists for. The device
// left; an intent opens a channel that waits for it; at the timeout the
// device is woken once, and a late reconnect finds no stale match.
func TestPushWakesOfflineResponder(t *testing.T) {
	t.Parallel()
	const ttl = 400 * time.Millisecond
	pusher := newFakePusher("ok")
	b := startBoard(t, Options{ChannelTTL: ttl, Pusher: pusher})
	rk, ik := newKey(t), newKey(t)
	rc := dial(t, b)
	present(t, rc, b, rk, nil, "https://push.example/up/asleep")
	rc.ws.CloseNow()
	eventually(t, "the disconnect", func() bool { return b.srv.Stats().Connections == 0 })
	ic := dial(t, b)
	ic.send(intentEnv(t, newIntent(t, ik, rk.Public(), b.now()), "i"))
	ic.expectAck("i")
	id := ic.expect(wire.KindMatch).MatchID
	ic.send(relayEnv(t, newFrame(t, ik, rk.Public(), id, wire.FrameOffer, wire.PhaseKey, b.now()), "o"))
	ic.expectAck("o")
	expectChannelClosed(t, ic, id, "timeout")
	pusher.expectCall(t, "https://push.example/up/asleep")
	pusher.expectNoCall(t, quiet)
	back := dial(t, b)
	present(t, back, b, rk, nil, "https://push.example/up/asleep")
	back.expectQuiet(quiet) // no match, no held offer from the dead channel
}

// TestNonPublicRanges: ranges netip does not call private are still
// refused as push targets.
func TestNonPublicRanges(t *testing.T) {
	for a, want := range map[string]bool{
		"100.64.0.1": true, "100.127.255.254": true, "198.18.0.1": true, "198.19.255.1": true,
		"64:ff9b::a00:1": true, "2002:c0a8:101::1": true,
		"100.128.0.1": false, "198.20.0.1": false, "8.8.8.8": false, "2001:4860::8888": false,
	} {
		if got := nonPublic(netip.MustParseAddr(a)); got != want {
			t.Errorf("%s: nonPublic %v, want %v", a, got, want)
		}
	}
}
