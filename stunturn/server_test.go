package stunturn

import (
	"io"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestSTUNBinding(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		tcp  bool
	}{
		{"stun only", Options{}, false},
		{"with TURN", Options{Secret: testSecret, Users: map[string]string{"u": "p"}}, false},
		{"over TCP", Options{TCP: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.o)
			var want string
			var c interface {
				SendBindingRequest() (net.Addr, error)
			}
			if tc.tcp {
				tc, conn := tcpClient(t, s, "", "")
				c, want = tc, conn.LocalAddr().String()
			} else {
				conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				c, want = turnClient(t, conn, s.Addr().String(), "", ""), conn.LocalAddr().String()
			}
			got, err := c.SendBindingRequest()
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != want {
				t.Fatalf("reflexive address %v, want %v", got, want)
			}
		})
	}
}

func TestURLs(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		host string
		want []string // with P for the port
	}{
		{"stun only", Options{}, "board.example", []string{"stun:board.example:P"}},
		{"stun only with TCP", Options{TCP: true}, "board.example", []string{"stun:board.example:P"}},
		{"turn", Options{Secret: testSecret}, "node.example", []string{"stun:node.example:P", "turn:node.example:P?transport=udp"}},
		{"turn with TCP", Options{Users: map[string]string{"u": "p"}, TCP: true}, "192.0.2.1",
			[]string{"stun:192.0.2.1:P", "turn:192.0.2.1:P?transport=udp", "turn:192.0.2.1:P?transport=tcp"}},
		{"IPv6 host", Options{}, "2001:db8::1", []string{"stun:[2001:db8::1]:P"}},
		{"default host", Options{RelayIP: "127.0.0.1"}, "", []string{"stun:127.0.0.1:P"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.o)
			port := strconv.Itoa(s.Addr().Port)
			var want []string
			for _, u := range tc.want {
				want = append(want, replaceP(u, port))
			}
			if got := s.URLs(tc.host); !slices.Equal(got, want) {
				t.Fatalf("URLs(%q) = %q, want %q", tc.host, got, want)
			}
			if tc.o.TCP {
				if s.TCPAddr() == nil || s.TCPAddr().Port != s.Addr().Port {
					t.Fatalf("TCP on %v, UDP on %v: want the same port", s.TCPAddr(), s.Addr())
				}
			} else if s.TCPAddr() != nil {
				t.Fatalf("TCPAddr %v without TCP", s.TCPAddr())
			}
		})
	}
}

func replaceP(u, port string) string {
	for i := 0; i+1 < len(u); i++ {
		if u[i] == ':' && u[i+1] == 'P' {
			return u[:i+1] + port + u[i+2:]
		}
	}
	return u
}

func TestListenErrors(t *testing.T) {
	for _, tc := range []struct {
		name, addr string
		o          Options
	}{
		{"bad address", "nonsense", Options{}},
		{"bad relay IP", "127.0.0.1:0", Options{RelayIP: "relay.example"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Listen(tc.addr, tc.o); err == nil {
				s.Close()
				t.Fatal("Listen succeeded")
			}
		})
	}
}

// TestClose: when Close returns, the listening ports, the relay ports
// and the TCP clients' connections are all free or cut.
func TestClose(t *testing.T) {
	s, err := Listen("127.0.0.1:0", Options{Users: map[string]string{"u": "p"}, TCP: true})
	if err != nil {
		t.Fatal(err)
	}
	relay := mustAllocate(t, udpClient(t, s, "u", "p"))
	tc, conn := tcpClient(t, s, "u", "p")
	tcpRelay := mustAllocate(t, tc)
	udpAddr, tcpAddr := s.Addr().String(), s.TCPAddr().String()

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, a := range []string{udpAddr, relay.LocalAddr().String(), tcpRelay.LocalAddr().String()} {
		pc, err := net.ListenPacket("udp4", a)
		if err != nil {
			t.Fatalf("udp %s still taken: %v", a, err)
		}
		pc.Close()
	}
	ln, err := net.Listen("tcp4", tcpAddr)
	if err != nil {
		t.Fatalf("tcp %s still taken: %v", tcpAddr, err)
	}
	ln.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("TCP client read %v after Close, want EOF", err)
	}
	if got := s.Stats().Allocations; got != 0 {
		t.Fatalf("%d allocations after Close", got)
	}
}
