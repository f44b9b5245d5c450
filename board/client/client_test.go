package client

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/stunturn"
)

// hostIP is what host candidates are rewritten to in tests: a loopback
// address nothing else uses, so a leak of host candidates is easy to
// spot and cannot be confused with the board's own 127.0.0.1.
const hostIP = "127.0.0.42"

// loopbackOnly keeps pion on the loopback interface (tests talk to
// nothing else) and marks host candidates with hostIP.
func loopbackOnly(se *webrtc.SettingEngine) {
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
		External: []string{hostIP}, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
	}); err != nil {
		panic(err)
	}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
}

type testBoard struct {
	srv  *board.Server
	url  string
	stun *stunturn.Server
}

func startBoard(t testing.TB, opts board.Options) *testBoard {
	t.Helper()
	st, err := stunturn.Listen("127.0.0.1:0", stunturn.Options{Users: map[string]string{"u": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts.STUNPort = st.Addr().Port
	srv, err := board.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { srv.Close(); hs.Close() })
	return &testBoard{srv: srv, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/", stun: st}
}

func mustKey(t testing.TB) *identity.PrivateKey {
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dialBoard(t testing.TB, b *testBoard, o Options) *Client {
	t.Helper()
	if o.WebRTC == nil {
		o.WebRTC = loopbackOnly
	}
	c, err := Dial(ctxT(t, 10*time.Second), b.url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rendezvous runs Accept on rc and Connect on ic and returns both
// sessions.
func rendezvous(t testing.TB, ic, rc *Client) (*Session, *Session) {
	t.Helper()
	type res struct {
		s   *Session
		err error
	}
	acc := make(chan res, 1)
	go func() {
		s, err := rc.Accept(ctxT(t, 30*time.Second))
		acc <- res{s, err}
	}()
	// Let the presence land first (an intent would wait for it anyway).
	time.Sleep(100 * time.Millisecond)
	si, err := ic.Connect(ctxT(t, 30*time.Second), rc.opts.Identity.Public())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { si.Close() })
	r := <-acc
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	t.Cleanup(func() { r.s.Close() })
	return si, r.s
}

func TestRendezvous(t *testing.T) {
	b := startBoard(t, board.Options{})
	a, z := mustKey(t), mustKey(t)
	ca := dialBoard(t, b, Options{Identity: a})
	cz := dialBoard(t, b, Options{Identity: z})
	sa, sz := rendezvous(t, ca, cz)
	if sa.Peer != z.Public() || sz.Peer != a.Public() {
		t.Fatalf("peers: %s %s", sa.Peer, sz.Peer)
	}
	// Both directions over the data channel.
	for _, dir := range []struct{ from, to *Session }{{sa, sz}, {sz, sa}} {
		msg := []byte("hello over the direct channel " + dir.from.Peer.String())
		if _, err := dir.from.Conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := dir.to.Conn.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("read %q, %v", buf[:n], err)
		}
	}
	// What each side revealed to the other: no host candidates.
	for _, s := range []*Session{sa, sz} {
		if strings.Contains(s.RemoteSDP, "typ host") || strings.Contains(s.RemoteSDP, hostIP) {
			t.Fatalf("the peer saw a host candidate:\n%s", s.RemoteSDP)
		}
		if !strings.Contains(s.RemoteSDP, "typ srflx") {
			t.Fatalf("no server-reflexive candidate:\n%s", s.RemoteSDP)
		}
	}
	st := b.srv.Stats()
	if st.Completed != 1 || st.Channels != 0 || st.Relayed != 4 {
		t.Fatalf("board stats %+v", st)
	}
}
