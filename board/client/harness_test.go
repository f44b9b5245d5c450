package client

// Test harness for the adversarial, blindness and wire tests: captures
// of what a board saw and logged, a pion transport.Net that records
// every UDP datagram, a scripted hostile board, a man in the middle in
// front of the real board, and a peer simulator that signs frames.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/keyhole-p2p/keyhole/board/wire"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/seal"
	"github.com/keyhole-p2p/keyhole/stunturn"
)

// ---- what a board saw and logged ----

// tapLog records every message a board received (in) and sent.
type tapLog struct {
	mu  sync.Mutex
	in  [][]byte
	out [][]byte
}

func (l *tapLog) tap(in bool, msg []byte) {
	c := append([]byte(nil), msg...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if in {
		l.in = append(l.in, c)
	} else {
		l.out = append(l.out, c)
	}
}

func (l *tapLog) all() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append(append([][]byte(nil), l.in...), l.out...)
}

// envelopes parses the captured messages of one direction.
func (l *tapLog) envelopes(in bool) []*wire.Envelope {
	l.mu.Lock()
	msgs := l.out
	if in {
		msgs = l.in
	}
	msgs = append([][]byte(nil), msgs...)
	l.mu.Unlock()
	var out []*wire.Envelope
	for _, m := range msgs {
		var e wire.Envelope
		if json.Unmarshal(m, &e) == nil {
			out = append(out, &e)
		}
	}
	return out
}

// count counts the captured messages of one direction that satisfy f.
func (l *tapLog) count(in bool, f func(*wire.Envelope, *wire.Frame) bool) int {
	n := 0
	for _, e := range l.envelopes(in) {
		var fr wire.Frame
		if e.Kind == wire.KindRelay {
			json.Unmarshal(e.Blob, &fr)
		}
		if f(e, &fr) {
			n++
		}
	}
	return n
}

func isSignaling(e *wire.Envelope, f *wire.Frame) bool {
	return e.Kind == wire.KindRelay && f.Phase == wire.PhaseSignaling
}

// lockedBuffer is a log sink shared by handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.b.Bytes()...)
}

// fanout sends each record to several handlers (text and JSON, so both
// spellings of every attribute are captured).
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range f {
		h.Handle(ctx, r.Clone())
	}
	return nil
}
func (f fanout) WithAttrs(a []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(a)
	}
	return out
}
func (f fanout) WithGroup(g string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(g)
	}
	return out
}

// debugLogger logs everything at Debug and above, as text and as JSON,
// into buf.
func debugLogger(buf *lockedBuffer) *slog.Logger {
	o := &slog.HandlerOptions{Level: slog.LevelDebug}
	return slog.New(fanout{slog.NewTextHandler(buf, o), slog.NewJSONHandler(buf, o)})
}

// errSink collects the errors a client logs (Accept logs a failed
// rendezvous and goes on waiting) and counts its warnings.
type errSink struct {
	errs  chan error
	mu    sync.Mutex
	warns []string
}

func newErrSink() *errSink { return &errSink{errs: make(chan error, 64)} }

func (h *errSink) Enabled(context.Context, slog.Level) bool { return true }
func (h *errSink) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.mu.Lock()
		h.warns = append(h.warns, r.Message)
		h.mu.Unlock()
	}
	r.Attrs(func(a slog.Attr) bool {
		if e, ok := a.Value.Any().(error); ok {
			select {
			case h.errs <- e:
			default:
			}
		}
		return true
	})
	return nil
}
func (h *errSink) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *errSink) WithGroup(string) slog.Handler      { return h }

func (h *errSink) warnings() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.warns...)
}

// next waits for the next logged error.
func (h *errSink) next(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the client logged no error")
		return nil
	}
}

// ---- running things in the background ----

type result[T any] struct {
	v   T
	err error
}

// goBG runs f in the background with a context that the test's cleanup
// cancels, and waits for f to return before the test ends, so nothing
// outlives it. The result arrives on the channel.
func goBG[T any](t *testing.T, d time.Duration, f func(context.Context) (T, error)) (<-chan result[T], context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	ch := make(chan result[T], 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		v, err := f(ctx)
		ch <- result[T]{v, err}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return ch, cancel
}

// wait takes a background result, failing the test after d.
func wait[T any](t *testing.T, ch <-chan result[T], d time.Duration) (T, error) {
	t.Helper()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-time.After(d):
		t.Fatalf("no result after %s", d)
		var zero T
		return zero, nil
	}
}

// closeSessions closes sessions at once (each Close may wait for its
// grace period) and registers nothing.
func closeSessions(ss ...*Session) {
	var wg sync.WaitGroup
	for _, s := range ss {
		if s == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Close()
		}()
	}
	wg.Wait()
}

// pair runs Accept on rc and Connect on ic; both sessions are closed,
// concurrently, when the test ends.
func pair(t *testing.T, ic, rc *Client) (*Session, *Session) {
	t.Helper()
	acc, _ := goBG(t, 30*time.Second, rc.Accept)
	waitPresence(t, rc)
	si, err := ic.Connect(ctxT(t, 30*time.Second), rc.opts.Identity.Public())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	sr, err := wait(t, acc, 30*time.Second)
	if err != nil {
		si.Close()
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { closeSessions(si, sr) })
	return si, sr
}

// waitPresence waits until c's presence was acknowledged.
func waitPresence(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		p := c.presence
		c.mu.Unlock()
		if p != "" {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the presence was never acknowledged")
}

// exchange sends msg from one session and reads it on the other.
func exchange(t *testing.T, from, to *Session, msg []byte) {
	t.Helper()
	if _, err := from.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(msg))
	buf := make([]byte, 64<<10)
	for len(got) < len(msg) {
		n, err := to.Read(buf)
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("the data channel delivered %d other bytes", len(got))
	}
}

func mustTK(t testing.TB) *identity.TransportKey {
	tk, err := identity.NewTransportKey()
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func turnServer(b *testBoard) []webrtc.ICEServer {
	return []webrtc.ICEServer{{URLs: []string{"turn:" + b.stun.Addr().String()}, Username: "u", Credential: "p"}}
}

// ---- a transport.Net that records every datagram ----

type datagram struct {
	out           bool
	local, remote string
	b             []byte
}

// recNet is pion's standard network with every UDP socket wrapped, so a
// test sees the literal bytes that leave and enter the process.
type recNet struct {
	*stdnet.Net
	mu     sync.Mutex
	grams  []datagram
	locals []string
}

func newRecNet(t testing.TB) *recNet {
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	return &recNet{Net: n}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func (n *recNet) record(out bool, local, remote net.Addr, b []byte) {
	if len(b) == 0 {
		return
	}
	d := datagram{out: out, local: addrString(local), remote: addrString(remote), b: append([]byte(nil), b...)}
	n.mu.Lock()
	n.grams = append(n.grams, d)
	n.mu.Unlock()
}

func (n *recNet) opened(a net.Addr) {
	n.mu.Lock()
	n.locals = append(n.locals, addrString(a))
	n.mu.Unlock()
}

func (n *recNet) datagrams() []datagram {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]datagram(nil), n.grams...)
}

func (n *recNet) localAddrs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.locals...)
}

// capture is every datagram's payload, for the scanner.
func (n *recNet) capture() []byte {
	var msgs [][]byte
	for _, d := range n.datagrams() {
		msgs = append(msgs, d.b)
	}
	return joinCapture(msgs)
}

func (n *recNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	n.opened(c.LocalAddr())
	return &recUDP{UDPConn: c, n: n}, nil
}

func (n *recNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.DialUDP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	n.opened(c.LocalAddr())
	return &recUDP{UDPConn: c, n: n}, nil
}

func (n *recNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	n.opened(c.LocalAddr())
	return &recPacket{PacketConn: c, n: n}, nil
}

func (n *recNet) Dial(network, address string) (net.Conn, error) {
	c, err := n.Net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	n.opened(c.LocalAddr())
	return &recConn{Conn: c, n: n}, nil
}

// recUDP records each datagram of a transport.UDPConn. It deliberately
// does not offer the AddrPort fast path, so pion uses ReadFrom/WriteTo.
type recUDP struct {
	transport.UDPConn
	n *recNet
}

func (c *recUDP) Read(b []byte) (int, error) {
	k, err := c.UDPConn.Read(b)
	c.n.record(false, c.LocalAddr(), c.RemoteAddr(), b[:max(k, 0)])
	return k, err
}

func (c *recUDP) ReadFrom(b []byte) (int, net.Addr, error) {
	k, a, err := c.UDPConn.ReadFrom(b)
	c.n.record(false, c.LocalAddr(), a, b[:max(k, 0)])
	return k, a, err
}

func (c *recUDP) ReadFromUDP(b []byte) (int, *net.UDPAddr, error) {
	k, a, err := c.UDPConn.ReadFromUDP(b)
	c.n.record(false, c.LocalAddr(), a, b[:max(k, 0)])
	return k, a, err
}

func (c *recUDP) ReadMsgUDP(b, oob []byte) (int, int, int, *net.UDPAddr, error) {
	k, oobn, fl, a, err := c.UDPConn.ReadMsgUDP(b, oob)
	c.n.record(false, c.LocalAddr(), a, b[:max(k, 0)])
	return k, oobn, fl, a, err
}

func (c *recUDP) Write(b []byte) (int, error) {
	c.n.record(true, c.LocalAddr(), c.RemoteAddr(), b)
	return c.UDPConn.Write(b)
}

func (c *recUDP) WriteTo(b []byte, a net.Addr) (int, error) {
	c.n.record(true, c.LocalAddr(), a, b)
	return c.UDPConn.WriteTo(b, a)
}

func (c *recUDP) WriteToUDP(b []byte, a *net.UDPAddr) (int, error) {
	c.n.record(true, c.LocalAddr(), a, b)
	return c.UDPConn.WriteToUDP(b, a)
}

func (c *recUDP) WriteMsgUDP(b, oob []byte, a *net.UDPAddr) (int, int, error) {
	c.n.record(true, c.LocalAddr(), a, b)
	return c.UDPConn.WriteMsgUDP(b, oob, a)
}

type recPacket struct {
	net.PacketConn
	n *recNet
}

func (c *recPacket) ReadFrom(b []byte) (int, net.Addr, error) {
	k, a, err := c.PacketConn.ReadFrom(b)
	c.n.record(false, c.LocalAddr(), a, b[:max(k, 0)])
	return k, a, err
}

func (c *recPacket) WriteTo(b []byte, a net.Addr) (int, error) {
	c.n.record(true, c.LocalAddr(), a, b)
	return c.PacketConn.WriteTo(b, a)
}

type recConn struct {
	net.Conn
	n *recNet
}

func (c *recConn) Read(b []byte) (int, error) {
	k, err := c.Conn.Read(b)
	c.n.record(false, c.LocalAddr(), c.RemoteAddr(), b[:max(k, 0)])
	return k, err
}

func (c *recConn) Write(b []byte) (int, error) {
	c.n.record(true, c.LocalAddr(), c.RemoteAddr(), b)
	return c.Conn.Write(b)
}

// loopbackRelay keeps a relay-only device on loopback. It gathers no
// host candidate, so it has none to mark with hostIP (pion refuses a
// host rewrite it cannot apply).
func loopbackRelay(se *webrtc.SettingEngine) {
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
}

// withNet keeps pion on loopback and on the recording network.
func withNet(n *recNet, relay bool) func(*webrtc.SettingEngine) {
	return func(se *webrtc.SettingEngine) {
		if relay {
			loopbackRelay(se)
		} else {
			loopbackOnly(se)
		}
		se.SetNet(n)
	}
}

// ---- a peer simulator: signs frames as a device would, or as it must not ----

type fakePeer struct {
	id *identity.PrivateKey
	tk *identity.TransportKey
	b  identity.Binding
}

func newFakePeer(t testing.TB) *fakePeer {
	id, tk := mustKey(t), mustTK(t)
	b, err := identity.NewBinding(id, tk.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &fakePeer{id: id, tk: tk, b: b}
}

func (p *fakePeer) pub() identity.PublicKey { return p.id.Public() }

// frame builds (unsigned) a frame from p to `to`.
func (p *fakePeer) frame(kind, phase, matchID string, to identity.PublicKey) *wire.Frame {
	typ := wire.TypeMatchOffer
	if kind == wire.FrameAnswer {
		typ = wire.TypeMatchAnswer
	}
	f := &wire.Frame{
		Type: typ, MatchID: matchID, Phase: phase,
		FromKey: wire.EncodeKey(p.pub()), ToKey: wire.EncodeKey(to),
		Timestamp: wire.FormatTime(time.Now()),
	}
	if phase == wire.PhaseKey {
		b := p.b
		f.Binding = &b
	}
	return f
}

func signFrame(t testing.TB, f *wire.Frame, k *identity.PrivateKey) *wire.Frame {
	t.Helper()
	if err := wire.Sign(f, k); err != nil {
		t.Fatal(err)
	}
	return f
}

// sealTo seals a signaling payload to a transport key.
func sealTo(t testing.TB, to [32]byte, p wire.SealedPayload) string {
	t.Helper()
	pt, _ := json.Marshal(p)
	box, err := seal.Seal(to, pt)
	if err != nil {
		t.Fatal(err)
	}
	return wire.B64.EncodeToString(box)
}

// relayMsg is the board's relay of frame f.
func relayMsg(kind string, f *wire.Frame) []byte {
	blob, _ := json.Marshal(f)
	return wire.Marshal(&wire.Envelope{Kind: wire.KindRelay, MatchID: f.MatchID, FrameKind: kind, Blob: blob})
}

func matchMsg(id, role string, counterparty identity.PublicKey) []byte {
	ms := int64(30000)
	return wire.Marshal(&wire.Envelope{Kind: wire.KindMatch, MatchID: id, Role: role, CounterpartyKey: wire.EncodeKey(counterparty), ExpiresInMS: &ms})
}

func closedMsg(id, reason string) []byte {
	return wire.Marshal(&wire.Envelope{Kind: wire.KindChannelClosed, MatchID: id, Reason: reason})
}

// frameOf decodes the frame a relay carries.
func frameOf(t testing.TB, e *wire.Envelope) *wire.Frame {
	t.Helper()
	var f wire.Frame
	if err := json.Unmarshal(e.Blob, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// openFrame opens a signaling frame's box with tk.
func openFrame(f *wire.Frame, tk *identity.TransportKey) (*wire.SealedPayload, error) {
	box, err := wire.B64.DecodeString(f.Sealed)
	if err != nil {
		return nil, err
	}
	pt, err := seal.Open(tk, box)
	if err != nil {
		return nil, err
	}
	var p wire.SealedPayload
	if err := wire.DecodeRecord(pt, "sealed_payload", &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// ---- a scripted hostile board ----

// evilBoard speaks the board's side of ORP by script: it sends a hello,
// acknowledges what a device sends, and otherwise sends only what the
// test tells it to. It records everything the device sent.
type evilBoard struct {
	url   string
	stun  *stunturn.Server
	conns chan *evilConn
	hello []byte // the first message; nil: a valid hello offering stun

	mu  sync.Mutex
	all []*evilConn
}

type evilConn struct {
	ws    *websocket.Conn
	in    chan *wire.Envelope
	done  chan struct{}
	noAck bool // set before the device sends what must not be acked

	mu   sync.Mutex
	wmu  sync.Mutex
	got  []*wire.Envelope
	bad  int
	rawN int
}

func startEvilBoard(t *testing.T, hello []byte) *evilBoard {
	t.Helper()
	st, err := stunturn.Listen("127.0.0.1:0", stunturn.Options{Users: map[string]string{"u": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	eb := &evilBoard{stun: st, conns: make(chan *evilConn, 8), hello: hello}
	if eb.hello == nil {
		bits := 0
		eb.hello = wire.Marshal(&wire.Envelope{Kind: wire.KindHello, Version: 1, PoWBits: &bits, MaxFrame: 64 << 10, FreshnessMS: 120000,
			STUN: []string{"stun:" + st.Addr().String()}})
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		ws.SetReadLimit(1 << 20)
		ec := &evilConn{ws: ws, in: make(chan *wire.Envelope, 64), done: make(chan struct{})}
		eb.mu.Lock()
		eb.all = append(eb.all, ec)
		eb.mu.Unlock()
		ec.send(eb.hello)
		eb.conns <- ec
		ec.readLoop()
	}))
	t.Cleanup(func() {
		eb.mu.Lock()
		for _, c := range eb.all {
			c.ws.CloseNow()
		}
		eb.mu.Unlock()
		hs.Close()
		st.Close()
	})
	eb.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/"
	return eb
}

// accept returns the next device connection.
func (eb *evilBoard) accept(t *testing.T) *evilConn {
	t.Helper()
	select {
	case c := <-eb.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no device connected to the evil board")
		return nil
	}
}

func (c *evilConn) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			return
		}
		c.mu.Lock()
		c.rawN++
		c.mu.Unlock()
		env, err := wire.Parse(b, wire.FromClient)
		if err != nil {
			c.mu.Lock()
			c.bad++
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		c.got = append(c.got, env)
		noAck := c.noAck
		c.mu.Unlock()
		if !noAck && env.Req != "" {
			c.send(wire.Marshal(&wire.Envelope{Kind: wire.KindAck, Req: env.Req}))
		}
		select {
		case c.in <- env:
		default:
		}
	}
}

// setNoAck stops automatic acknowledgements.
func (c *evilConn) setNoAck() {
	c.mu.Lock()
	c.noAck = true
	c.mu.Unlock()
}

func (c *evilConn) send(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.ws.Write(ctx, websocket.MessageText, b)
}

func (c *evilConn) sendT(t *testing.T, b []byte) {
	t.Helper()
	if err := c.send(b); err != nil {
		t.Fatalf("evil board: send: %v", err)
	}
}

// next waits for the device's next message, which must be of kind.
func (c *evilConn) next(t *testing.T, kind string) *wire.Envelope {
	t.Helper()
	select {
	case e := <-c.in:
		if e.Kind != kind {
			t.Fatalf("the device sent a %s, expected a %s", e.Kind, kind)
		}
		return e
	case <-time.After(10 * time.Second):
		t.Fatalf("the device sent no %s", kind)
		return nil
	}
}

// received lists what the device sent, in order.
func (c *evilConn) received() []*wire.Envelope {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*wire.Envelope(nil), c.got...)
}

// relaysSent lists the frames the device sent.
func (c *evilConn) relaysSent(t testing.TB) []*wire.Frame {
	var out []*wire.Frame
	for _, e := range c.received() {
		if e.Kind == wire.KindRelay {
			out = append(out, frameOf(t, e))
		}
	}
	return out
}

// ---- a man in the middle in front of the real board ----

// mitm relays a device's WebSocket to a real board and lets a test
// rewrite, drop or inject messages in either direction.
type mitm struct {
	url string
	// rewrite, if set, maps one message to those forwarded instead.
	rewrite func(toDevice bool, msg []byte) [][]byte

	mu         sync.Mutex
	fromDevice [][]byte
	toDevice   [][]byte
	conns      []*websocket.Conn
}

func startMITM(t *testing.T, target string, rewrite func(toDevice bool, msg []byte) [][]byte) *mitm {
	t.Helper()
	m := &mitm{rewrite: rewrite}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dev, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		up, _, err := websocket.Dial(r.Context(), target, nil)
		if err != nil {
			dev.CloseNow()
			return
		}
		dev.SetReadLimit(1 << 20)
		up.SetReadLimit(1 << 20)
		m.mu.Lock()
		m.conns = append(m.conns, dev, up)
		m.mu.Unlock()
		var wg sync.WaitGroup
		pump := func(from, to *websocket.Conn, toDevice bool) {
			defer wg.Done()
			defer from.CloseNow()
			defer to.CloseNow()
			for {
				_, b, err := from.Read(context.Background())
				if err != nil {
					return
				}
				out := [][]byte{b}
				if m.rewrite != nil {
					out = m.rewrite(toDevice, b)
				}
				m.mu.Lock()
				if toDevice {
					m.toDevice = append(m.toDevice, out...)
				} else {
					m.fromDevice = append(m.fromDevice, b)
				}
				m.mu.Unlock()
				for _, o := range out {
					if to.Write(context.Background(), websocket.MessageText, o) != nil {
						return
					}
				}
			}
		}
		wg.Add(2)
		go pump(up, dev, true)
		go pump(dev, up, false)
		wg.Wait()
	}))
	t.Cleanup(func() {
		m.mu.Lock()
		for _, c := range m.conns {
			c.CloseNow()
		}
		m.mu.Unlock()
		hs.Close()
	})
	m.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/"
	return m
}

// deviceFrames lists the frames the device sent through the proxy.
func (m *mitm) deviceFrames(t testing.TB) []*wire.Frame {
	m.mu.Lock()
	msgs := append([][]byte(nil), m.fromDevice...)
	m.mu.Unlock()
	var out []*wire.Frame
	for _, b := range msgs {
		var e wire.Envelope
		if json.Unmarshal(b, &e) == nil && e.Kind == wire.KindRelay {
			out = append(out, frameOf(t, &e))
		}
	}
	return out
}

// rewriteFrame applies f to relays toward the device whose frame is in
// phase and of kind; everything else passes.
func rewriteFrame(phase, kind string, f func(env *wire.Envelope, fr *wire.Frame) [][]byte) func(bool, []byte) [][]byte {
	return func(toDevice bool, msg []byte) [][]byte {
		if !toDevice {
			return [][]byte{msg}
		}
		var e wire.Envelope
		if json.Unmarshal(msg, &e) != nil || e.Kind != wire.KindRelay || e.FrameKind != kind {
			return [][]byte{msg}
		}
		var fr wire.Frame
		if json.Unmarshal(e.Blob, &fr) != nil || fr.Phase != phase {
			return [][]byte{msg}
		}
		return f(&e, &fr)
	}
}

// ---- small checks ----

func wantErr(t *testing.T, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("got error %v, want one wrapping %q", err, sentinel)
	}
}

// udpSink is a UDP socket a forged SDP points the victim at: a datagram
// arriving there means the victim applied that SDP.
type udpSink struct {
	c    *net.UDPConn
	port int
}

func newUDPSink(t testing.TB) *udpSink {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpSink{c: c, port: c.LocalAddr().(*net.UDPAddr).Port}
}

// stunWithin reports whether a STUN message arrives within d.
func (s *udpSink) stunWithin(d time.Duration) bool {
	buf := make([]byte, 2048)
	deadline := time.Now().Add(d)
	for {
		s.c.SetReadDeadline(deadline)
		n, _, err := s.c.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		if isSTUN(buf[:n]) {
			return true
		}
	}
}

// isSTUN: a STUN message carries the magic cookie at offset 4.
func isSTUN(b []byte) bool {
	return len(b) >= 20 && b[0]&0xc0 == 0 && b[4] == 0x21 && b[5] == 0x12 && b[6] == 0xa4 && b[7] == 0x42
}
