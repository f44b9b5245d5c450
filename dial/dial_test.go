package dial_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/keyhole-p2p/keyhole/board"
	"github.com/keyhole-p2p/keyhole/dial"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/kps"
	"github.com/keyhole-p2p/keyhole/node"
	"github.com/keyhole-p2p/keyhole/node/nodetest"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/keyhole-p2p/keyhole/stunturn"
)

// loopback keeps pion on lo; tests talk to nothing else.
func loopback(se *webrtc.SettingEngine) {
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
}

// world is what a device needs around it: a board, and a community node
// with STUN and TURN.
type world struct {
	board string
	node  string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	// Every device here shares 127.0.0.1, so the per-address quota
	// would count them all as one.
	st, err := stunturn.Listen("127.0.0.1:0", stunturn.Options{Secret: []byte("dial test turn secret"), MaxAllocationsPerIP: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, nodeURL := nodetest.Start(t, node.Options{TURN: st})
	b, err := board.New(board.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(b)
	t.Cleanup(func() { b.Close(); hs.Close() })
	return &world{board: "ws" + strings.TrimPrefix(hs.URL, "http") + "/", node: nodeURL}
}

// device is a listening device: a KPS listener for direct dials and a
// board listener for everything else, both answering with an echo.
type device struct {
	key  *identity.PrivateKey
	addr record.KPSAddr
}

func startDevice(t *testing.T, w *world) *device {
	t.Helper()
	key, _ := identity.Generate()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kl, err := kps.Listen(ctx, "127.0.0.1:0", kps.Options{Identity: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kl.Close() })
	bl, err := dial.Listen(ctx, dial.ListenOptions{Identity: key, Boards: []string{w.board}, Nodes: []string{w.node}, WebRTC: loopback})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bl.Close() })
	serve := func(accept func(context.Context) (kps.Conn, error)) {
		for {
			c, err := accept(ctx)
			if err != nil {
				return
			}
			go kps.Echo(ctx, c)
		}
	}
	go serve(kl.Accept)
	go serve(bl.Accept)
	waitPresent(t, w, key)
	return &device{key: key, addr: kl.AddressAt(netip.MustParseAddr("127.0.0.1"))}
}

// waitPresent gives the board listener time to announce. A dial before
// it would find no one; a real dialer retries, the test just waits.
func waitPresent(t *testing.T, w *world, key *identity.PrivateKey) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
}

// echo checks that a stream over c carries bytes both ways.
func echo(t *testing.T, c kps.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("over whatever path won")
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != string(msg) {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// unreachable is d's address on a port where nothing listens.
func unreachable(d *device) record.KPSAddr {
	a := d.addr
	a.AddrPort = netip.AddrPortFrom(a.AddrPort.Addr(), 9)
	return a
}

// TestLadder: each rung of the ladder connects on its own, the fastest
// available one wins, and whatever wins proves the dialed key and
// carries streams.
func TestLadder(t *testing.T) {
	w := newWorld(t)
	dev := startDevice(t, w)
	me, _ := identity.Generate()
	tests := []struct {
		name    string
		content record.Content
		paths   []dial.Path
		want    dial.Path
	}{
		{"direct address wins over the board", record.Content{Direct: []record.KPSAddr{dev.addr}, Boards: []string{w.board}, Nodes: []string{w.node}}, nil, dial.Direct},
		{"dead direct address: punched through the board", record.Content{Direct: []record.KPSAddr{unreachable(dev)}, Boards: []string{w.board}, Nodes: []string{w.node}}, nil, dial.Punched},
		{"board only", record.Content{Boards: []string{w.board}, Nodes: []string{w.node}}, nil, dial.Punched},
		{"relay only", record.Content{Boards: []string{w.board}, Nodes: []string{w.node}}, []dial.Path{dial.Relayed}, dial.Relayed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := dial.Dial(ctx, dev.key.Public(), dial.Options{Identity: me, Content: &tc.content, Paths: tc.paths, WebRTC: loopback})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Conn.Close()
			if r.Path != tc.want || r.PathNow() != tc.want {
				t.Fatalf("path %s (now %s) via %s, want %s; attempts %+v", r.Path, r.PathNow(), r.Via, tc.want, r.Attempts)
			}
			if got := kps.PeerKey(r.Conn); got != dev.key.Public() {
				t.Fatalf("connected to %s, dialed %s", got, dev.key.Public())
			}
			echo(t, r.Conn)
			t.Logf("%s via %s in %v", r.Path, r.Via, r.Connect)
		})
	}
}

// TestWrongKey: a record pointing at another device's address or board
// does not yield a connection to the dialed key.
func TestWrongKey(t *testing.T) {
	w := newWorld(t)
	dev := startDevice(t, w)
	me, _ := identity.Generate()
	impostor, _ := identity.Generate() // the key we dial; dev cannot prove it
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	content := record.Content{Direct: []record.KPSAddr{dev.addr}}
	_, err := dial.Dial(ctx, impostor.Public(), dial.Options{Identity: me, Content: &content, WebRTC: loopback})
	if !errors.Is(err, kps.ErrAuthWrongKey) {
		t.Fatalf("dialing %s at %s's address: %v, want ErrAuthWrongKey", impostor.Public(), dev.key.Public(), err)
	}
	// Through the board, no one answers for the impostor's key.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	content = record.Content{Boards: []string{w.board}}
	if _, err := dial.Dial(ctx2, impostor.Public(), dial.Options{Identity: me, Content: &content, WebRTC: loopback}); err == nil {
		t.Fatal("a board connected us to a key nobody holds")
	}
}

// TestReflexive: the node's STUN server reports the address this test's
// socket comes from (loopback here: no NAT), and a silent server is an
// error within the deadline, not a hang.
func TestReflexive(t *testing.T) {
	st, err := stunturn.Listen("127.0.0.1:0", stunturn.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := dial.Reflexive(ctx, "stun:"+st.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if got.Addr() != netip.MustParseAddr("127.0.0.1") || got.Port() == 0 {
		t.Fatalf("reflexive address %s, want 127.0.0.1:<port>", got)
	}
	silent, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	t0 := time.Now()
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if _, err := dial.Reflexive(ctx2, "stun:"+silent.LocalAddr().String()); err == nil {
		t.Fatal("a silent STUN server gave an address")
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("gave up after %v, past the deadline", d)
	}
	if _, err := dial.Reflexive(ctx, "turn:127.0.0.1:1"); err == nil {
		t.Fatal("accepted a turn: URL")
	}
}
