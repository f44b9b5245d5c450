package stunturn

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
)

var quietPion = pionLogs{slog.New(slog.DiscardHandler)}

var testSecret = []byte("test secret")

// start runs a server on loopback for the test.
func start(t *testing.T, o Options) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// clock is an Options.Now the test moves.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// udpClient is a pion TURN client on its own loopback UDP socket.
func udpClient(t *testing.T, s *Server, user, pass string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return turnClient(t, conn, s.Addr().String(), user, pass)
}

// tcpClient is a pion TURN client over its own TCP connection; the
// connection is returned too, to read its local address or cut it.
func tcpClient(t *testing.T, s *Server, user, pass string) (*turn.Client, net.Conn) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.TCPAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return turnClient(t, turn.NewSTUNConn(conn), s.TCPAddr().String(), user, pass), conn
}

func turnClient(t *testing.T, conn net.PacketConn, addr, user, pass string) *turn.Client {
	t.Helper()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass,
		RTO: 100 * time.Millisecond, LoggerFactory: quietPion,
	})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); conn.Close() })
	return c
}

// allocate asks for a relay, bounded in time; the relay is closed
// (Refresh with lifetime 0) at the end of the test.
func allocate(t *testing.T, c *turn.Client) (net.PacketConn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	relay, err := c.AllocateWithContext(ctx)
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return relay, err
}

func mustAllocate(t *testing.T, c *turn.Client) net.PacketConn {
	t.Helper()
	relay, err := allocate(t, c)
	if err != nil {
		t.Fatal(err)
	}
	return relay
}

// code is the TURN error code of err, or 0.
func code(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	return 0
}

// peerSocket is a UDP socket on loopback standing for the far peer.
func peerSocket(t *testing.T) net.PacketConn {
	t.Helper()
	p, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// recv reads one datagram within d; ok is false on timeout.
func recv(t *testing.T, c net.PacketConn, d time.Duration) (msg string, from net.Addr, ok bool) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", nil, false
		}
		t.Fatal(err)
	}
	return string(buf[:n]), from, true
}

// roundTrip relays a datagram from the client to peer and one back,
// and checks both arrive intact and from the right address.
func roundTrip(t *testing.T, relay, peer net.PacketConn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var from net.Addr
	for {
		if _, err := relay.WriteTo([]byte("ping"), peer.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		msg, f, ok := recv(t, peer, 200*time.Millisecond)
		if ok {
			if msg != "ping" || f.String() != relay.LocalAddr().String() {
				t.Fatalf("peer got %q from %v, want \"ping\" from %v", msg, f, relay.LocalAddr())
			}
			from = f
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the peer got nothing through the relay")
		}
	}
	for {
		if _, err := peer.WriteTo([]byte("pong"), from); err != nil {
			t.Fatal(err)
		}
		msg, f, ok := recv(t, relay, 200*time.Millisecond)
		if ok {
			if msg != "pong" || f.String() != peer.LocalAddr().String() {
				t.Fatalf("client got %q from %v, want \"pong\" from %v", msg, f, peer.LocalAddr())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the client got nothing back through the relay")
		}
	}
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
