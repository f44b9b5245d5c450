package board

// The test harness: real boards on loopback (httptest), and a raw
// WebSocket client that builds, signs and hand-edits ORP messages itself
// and checks every reply from the board against the board_* schemas.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
)

// waitLong bounds every wait for something that should happen; tests do
// not sleep for it, they stop waiting as soon as it happens.
const waitLong = 5 * time.Second

// quiet is how long a test listens to show that nothing arrives.
const quiet = 150 * time.Millisecond

// fakeClock is a board clock the test moves by hand. It starts far
// from the real time, so anything that mixes the two clocks shows.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testBoard is one board served on 127.0.0.1.
type testBoard struct {
	srv  *Server
	hs   *httptest.Server
	url  string // ws://127.0.0.1:port/
	http string // http://127.0.0.1:port
	now  func() time.Time
}

// newTestBoard reserves a loopback listener, so the board's own URL is
// known before the board is made (PublicURL, neighbours' Peers).
func newTestBoard(t testing.TB) *testBoard {
	t.Helper()
	hs := httptest.NewUnstartedServer(http.NotFoundHandler())
	addr := hs.Listener.Addr().String()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("test listener on %s, not loopback", addr)
	}
	return &testBoard{hs: hs, url: "ws://" + addr + "/", http: "http://" + addr}
}

// start makes the board with opts and serves it.
func (tb *testBoard) start(t testing.TB, opts Options) *testBoard {
	t.Helper()
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	tb.srv = srv
	tb.now = srv.opts.Now
	tb.hs.Config.Handler = srv
	tb.hs.Start()
	t.Cleanup(func() {
		srv.Close()
		tb.hs.Close()
	})
	return tb
}

func startBoard(t testing.TB, opts Options) *testBoard {
	t.Helper()
	return newTestBoard(t).start(t, opts)
}

// received is one message from the board.
type received struct {
	env *wire.Envelope
	raw []byte
	err error
}

// rawClient is a WebSocket to a board that sends whatever the test
// builds and parses every reply with wire.Parse(b, wire.FromBoard) (or
// FromPeer for a fake neighbouring board).
type rawClient struct {
	t     testing.TB
	ws    *websocket.Conn
	peer  bool
	msgs  chan received
	done  chan struct{}
	err   error // why reading ended; valid once done is closed
	hello *wire.Envelope
}

func dialRaw(t testing.TB, url string, opts *websocket.DialOptions, peer bool) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	ws.SetReadLimit(1 << 20)
	c := &rawClient{t: t, ws: ws, peer: peer, msgs: make(chan received, 4096), done: make(chan struct{})}
	go c.readLoop()
	t.Cleanup(func() { ws.CloseNow() })
	return c
}

// dial connects a device and reads the board's hello.
func dial(t testing.TB, b *testBoard) *rawClient {
	t.Helper()
	c := dialRaw(t, b.url, nil, false)
	c.hello = c.expect(wire.KindHello)
	return c
}

// dialNeighbour connects as a (fake) neighbouring board named name.
func dialNeighbour(t testing.TB, b *testBoard, name string) *rawClient {
	t.Helper()
	c := dialRaw(t, b.url, nil, true)
	c.expect(wire.KindHello)
	c.send(&wire.Envelope{Kind: wire.KindPeerHello, Board: name})
	eventually(t, "the board to count the neighbour", func() bool { return b.srv.Stats().Neighbors >= 1 })
	return c
}

func (c *rawClient) readLoop() {
	defer close(c.done)
	for {
		typ, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		r := received{raw: b}
		switch {
		case typ != websocket.MessageText:
			r.err = fmt.Errorf("a %v message", typ)
		default:
			r.env, r.err = wire.Parse(b, wire.FromBoard)
			if r.err != nil && c.peer {
				r.env, r.err = wire.Parse(b, wire.FromPeer)
			}
		}
		c.msgs <- r
	}
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawClient) send(e *wire.Envelope) {
	c.t.Helper()
	c.write(wire.Marshal(e))
}

// next returns the next message from the board, which must meet its
// schema.
func (c *rawClient) next() *wire.Envelope {
	c.t.Helper()
	r, ok := c.recv(waitLong)
	if !ok {
		c.t.Fatalf("no message from the board in %s (read ended: %v)", waitLong, c.closedErr())
	}
	return r
}

func (c *rawClient) recv(d time.Duration) (*wire.Envelope, bool) {
	c.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-c.msgs:
		return c.check(r), true
	case <-c.done:
		select {
		case r := <-c.msgs:
			return c.check(r), true
		default:
			return nil, false
		}
	case <-timer.C:
		return nil, false
	}
}

func (c *rawClient) check(r received) *wire.Envelope {
	c.t.Helper()
	if r.err != nil {
		c.t.Fatalf("the board sent a message outside its schema: %s: %v", r.raw, r.err)
	}
	return r.env
}

func (c *rawClient) closedErr() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

func (c *rawClient) expect(kind string) *wire.Envelope {
	c.t.Helper()
	e := c.next()
	if e.Kind != kind {
		c.t.Fatalf("got %s, want %s: %s", e.Kind, kind, wire.Marshal(e))
	}
	return e
}

func (c *rawClient) expectAck(req string) {
	c.t.Helper()
	e := c.expect(wire.KindAck)
	if e.Req != req {
		c.t.Fatalf("ack for req %q, want %q", e.Req, req)
	}
}

func (c *rawClient) expectRejected(code string) *wire.Envelope {
	c.t.Helper()
	e := c.next()
	if e.Kind != wire.KindRejected || e.Code != code {
		c.t.Fatalf("got %s, want rejected %s", wire.Marshal(e), code)
	}
	return e
}

// expectQuiet: nothing arrives for d.
func (c *rawClient) expectQuiet(d time.Duration) {
	c.t.Helper()
	if e, ok := c.recv(d); ok {
		c.t.Fatalf("unexpected message: %s", wire.Marshal(e))
	}
}

// expectClosed waits for the board to end the connection with one of
// statuses (-1: the connection ended without a close frame). Messages
// still in flight are allowed only if allow accepts them.
func (c *rawClient) expectClosed(allow func(*wire.Envelope) bool, statuses ...websocket.StatusCode) {
	c.t.Helper()
	deadline := time.After(waitLong)
	for {
		select {
		case r := <-c.msgs:
			if e := c.check(r); allow == nil || !allow(e) {
				c.t.Fatalf("unexpected message before the close: %s", r.raw)
			}
			continue
		case <-c.done:
		case <-deadline:
			c.t.Fatalf("the board did not close the connection")
		}
		break
	}
	for len(c.msgs) > 0 {
		if e := c.check(<-c.msgs); allow == nil || !allow(e) {
			c.t.Fatalf("unexpected message before the close: %s", wire.Marshal(e))
		}
	}
	if got := websocket.CloseStatus(c.err); !slices.Contains(statuses, got) {
		c.t.Fatalf("closed with %v (%v), want %v", got, c.err, statuses)
	}
}

// eventually polls cond until it holds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// --- records ---

func newKey(t testing.TB) *identity.PrivateKey {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64(k *identity.PrivateKey) string { return wire.EncodeKey(k.Public()) }

func mustJSON(t testing.TB, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newPresence(t testing.TB, k *identity.PrivateKey, at time.Time, scope []string, push string) *wire.Presence {
	t.Helper()
	p, err := wire.NewPresence(k, at, scope, push)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newIntent(t testing.TB, k *identity.PrivateKey, target identity.PublicKey, at time.Time) *wire.Intent {
	t.Helper()
	in, err := wire.NewIntent(k, target, at)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func presenceEnv(t testing.TB, p *wire.Presence, req string) *wire.Envelope {
	return &wire.Envelope{Kind: wire.KindPresence, Req: req, Record: mustJSON(t, p)}
}

func intentEnv(t testing.TB, in *wire.Intent, req string) *wire.Envelope {
	return &wire.Envelope{Kind: wire.KindIntent, Req: req, Record: mustJSON(t, in)}
}

// present sends a presence for k and waits for its ack.
func present(t testing.TB, c *rawClient, b *testBoard, k *identity.PrivateKey, scope []string, push string) *wire.Presence {
	t.Helper()
	p := newPresence(t, k, b.now(), scope, push)
	c.send(presenceEnv(t, p, "p"))
	c.expectAck("p")
	return p
}

// toMap turns a record into a map for hand edits.
func toMap(t testing.TB, v any) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, v), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// signMap (re-)signs a hand-edited record with k.
func signMap(t testing.TB, k *identity.PrivateKey, m map[string]any) map[string]any {
	t.Helper()
	msg, err := wire.SignedBytes(mustJSON(t, m))
	if err != nil {
		t.Fatal(err)
	}
	m["signature"] = wire.B64.EncodeToString(k.Sign(msg))
	return m
}

// flipSig changes one character in the middle of an encoded signature,
// keeping it inside the schema's pattern.
func flipSig(sig string, at int) string {
	b := []byte(sig)
	if b[at] == 'A' {
		b[at] = 'B'
	} else {
		b[at] = 'A'
	}
	return string(b)
}

// malleate adds the group order L to the signature's S: the same
// signature to a lax verifier, refused by a strict one.
func malleate(t testing.TB, sig string) string {
	t.Helper()
	raw, err := wire.B64.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	l := []byte{0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10}
	s := raw[32:]
	carry := 0
	for i := range s {
		v := int(s[i]) + int(l[i]) + carry
		s[i] = byte(v)
		carry = v >> 8
	}
	return wire.B64.EncodeToString(raw)
}

func frameKindOf(typ string) string {
	if typ == wire.TypeMatchAnswer {
		return wire.FrameAnswer
	}
	return wire.FrameOffer
}

// newFrame builds and signs a frame. kind is offer or answer; phase key
// carries a fresh transport key binding, phase signaling an opaque
// sealed blob.
func newFrame(t testing.TB, from *identity.PrivateKey, to identity.PublicKey, matchID, kind, phase string, at time.Time) *wire.Frame {
	t.Helper()
	typ := wire.TypeMatchOffer
	if kind == wire.FrameAnswer {
		typ = wire.TypeMatchAnswer
	}
	f := &wire.Frame{Type: typ, MatchID: matchID, Phase: phase, FromKey: b64(from), ToKey: wire.EncodeKey(to), Timestamp: wire.FormatTime(at)}
	if phase == wire.PhaseKey {
		tk, err := identity.NewTransportKey()
		if err != nil {
			t.Fatal(err)
		}
		bd, err := identity.NewBinding(from, tk.Public(), at)
		if err != nil {
			t.Fatal(err)
		}
		f.Binding = &bd
	} else {
		sealed := make([]byte, 96)
		rand.Read(sealed)
		f.Sealed = wire.B64.EncodeToString(sealed)
	}
	if err := wire.Sign(f, from); err != nil {
		t.Fatal(err)
	}
	return f
}

// relayEnv wraps a frame (a *wire.Frame or a hand-edited map) for the
// match named inside it.
func relayEnv(t testing.TB, frame any, req string) *wire.Envelope {
	t.Helper()
	m := toMap(t, frame)
	id, _ := m["match_id"].(string)
	typ, _ := m["type"].(string)
	return &wire.Envelope{Kind: wire.KindRelay, Req: req, MatchID: id, FrameKind: frameKindOf(typ), Blob: mustJSON(t, frame)}
}

// pair is two devices matched on one board.
type pair struct {
	b      *testBoard
	ik, rk *identity.PrivateKey
	ic, rc *rawClient
	id     string
}

// matchPair connects a responder that presents and an initiator that
// sends an intent toward it, and checks both match messages.
func matchPair(t testing.TB, b *testBoard) *pair {
	t.Helper()
	p := &pair{b: b, ik: newKey(t), rk: newKey(t)}
	p.rc = dial(t, b)
	present(t, p.rc, b, p.rk, nil, "")
	p.ic = dial(t, b)
	p.ic.send(intentEnv(t, newIntent(t, p.ik, p.rk.Public(), b.now()), "i"))
	p.ic.expectAck("i")
	mi := p.ic.expect(wire.KindMatch)
	mr := p.rc.expect(wire.KindMatch)
	if mi.Role != wire.RoleInitiator || mr.Role != wire.RoleResponder {
		t.Fatalf("roles %q and %q", mi.Role, mr.Role)
	}
	if mi.CounterpartyKey != b64(p.rk) || mr.CounterpartyKey != b64(p.ik) {
		t.Fatalf("counterparty keys are not the other device's")
	}
	if mi.MatchID != mr.MatchID {
		t.Fatalf("the two sides got different match ids")
	}
	p.id = mi.MatchID
	return p
}

// frame builds a valid frame from the side that may send kind.
func (p *pair) frame(t testing.TB, kind, phase string) *wire.Frame {
	t.Helper()
	if kind == wire.FrameOffer {
		return newFrame(t, p.ik, p.rk.Public(), p.id, kind, phase, p.b.now())
	}
	return newFrame(t, p.rk, p.ik.Public(), p.id, kind, phase, p.b.now())
}

// pass relays a valid frame from the side that may send it and checks
// the other side gets the blob unchanged.
func (p *pair) pass(t testing.TB, kind, phase string) *wire.Frame {
	t.Helper()
	f := p.frame(t, kind, phase)
	from, to := p.ic, p.rc
	if kind == wire.FrameAnswer {
		from, to = p.rc, p.ic
	}
	env := relayEnv(t, f, "r")
	from.send(env)
	from.expectAck("r")
	got := to.expect(wire.KindRelay)
	if got.MatchID != p.id || got.FrameKind != kind || !bytes.Equal(got.Blob, env.Blob) {
		t.Fatalf("relayed %s, sent %s", wire.Marshal(got), wire.Marshal(env))
	}
	return f
}

// keyPhase exchanges both transport keys.
func (p *pair) keyPhase(t testing.TB) {
	t.Helper()
	p.pass(t, wire.FrameOffer, wire.PhaseKey)
	p.pass(t, wire.FrameAnswer, wire.PhaseKey)
}

// expectClosedChannel: c gets channel_closed for id with reason.
func expectChannelClosed(t testing.TB, c *rawClient, id, reason string) {
	t.Helper()
	e := c.expect(wire.KindChannelClosed)
	if e.MatchID != id || e.Reason != reason {
		t.Fatalf("channel_closed %s, want match %s reason %s", wire.Marshal(e), id, reason)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var errPushFailed = errors.New("push refused")
