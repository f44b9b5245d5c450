package stunturn

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestAllocationQuotas: the allocation over a quota is refused with the
// right code, and the quota frees when an allocation closes.
func TestAllocationQuotas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		o        Options
		sameUser bool
		want     int
	}{
		{"per user", Options{MaxAllocationsPerUser: 2}, true, 486},
		{"per IP", Options{MaxAllocationsPerIP: 2}, false, 486},
		{"whole server", Options{MaxAllocations: 2}, false, 508},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Secret = testSecret
			s := start(t, tc.o)
			user, pass := mint(t, s, "shared", time.Hour)
			cred := func(i int) (string, string) {
				if tc.sameUser {
					return user, pass
				}
				return mint(t, s, "device-"+strconv.Itoa(i), time.Hour)
			}
			var relays []net.PacketConn
			for i := range 2 {
				u, p := cred(i)
				relays = append(relays, mustAllocate(t, udpClient(t, s, u, p)))
			}
			u, p := cred(2)
			if _, err := allocate(t, udpClient(t, s, u, p)); code(err) != tc.want {
				t.Fatalf("third Allocate: %v, want error %d", err, tc.want)
			}
			if st := s.Stats(); st.Allocations != 2 || st.Refused == 0 {
				t.Fatalf("stats %+v, want 2 allocations and a refusal", st)
			}
			relays[0].Close() // Refresh with lifetime 0
			eventually(t, "freed", func() bool { return s.Stats().Allocations == 1 })
			mustAllocate(t, udpClient(t, s, u, p))
		})
	}
}

// TestTCPClientGoneFreesQuota: pion deletes the allocation of a TCP
// client that hangs up, and the quota sees it.
func TestTCPClientGoneFreesQuota(t *testing.T) {
	s := start(t, Options{Secret: testSecret, TCP: true, MaxAllocationsPerUser: 1})
	user, pass := mint(t, s, "d", time.Hour)
	c, conn := tcpClient(t, s, user, pass)
	mustAllocate(t, c)
	if _, err := allocate(t, udpClient(t, s, user, pass)); code(err) != 486 {
		t.Fatalf("second Allocate: %v, want 486", err)
	}
	conn.Close()
	eventually(t, "freed", func() bool { return s.Stats().Allocations == 0 })
	mustAllocate(t, udpClient(t, s, user, pass))
}

// TestTCPRelayRefused: RFC 6062 TCP relays would escape the byte
// accounting, so they are not offered.
func TestTCPRelayRefused(t *testing.T) {
	s := start(t, Options{Users: map[string]string{"u": "p"}, TCP: true})
	c, _ := tcpClient(t, s, "u", "p")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, err := c.AllocateTCPWithContext(ctx)
	if err == nil {
		a.Close()
	}
	if code(err) != 508 {
		t.Fatalf("TCP Allocate: %v, want 508", err)
	}
}

// TestTCPConnectionLimit: TCP connections past MaxAllocationsPerIP from
// one IP are closed at once.
func TestTCPConnectionLimit(t *testing.T) {
	s := start(t, Options{TCP: true, MaxAllocationsPerIP: 2})
	var conns []net.Conn
	for range 3 {
		c, err := net.DialTimeout("tcp", s.TCPAddr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	eventually(t, "refused", func() bool { return s.Stats().Refused == 1 })
	conns[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conns[2].Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection still open")
	}
	// Hanging up frees the place.
	conns[0].Close()
	eventually(t, "released", func() bool {
		s.tcp.mu.Lock()
		defer s.tcp.mu.Unlock()
		return len(s.tcp.conns) == 1
	})
	c, _ := tcpClient(t, s, "", "")
	if _, err := c.SendBindingRequest(); err != nil {
		t.Fatal(err)
	}
}

// TestQuotaBookkeeping drives the counter through the paths pion's
// events cannot show in an end-to-end test: a creation that fails
// after admit, one slower than pendingTTL, IPv6 prefixes.
func TestQuotaBookkeeping(t *testing.T) {
	a := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}
	a2 := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 2}
	b := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 1}
	v6 := func(s string) net.Addr { return &net.UDPAddr{IP: net.ParseIP(s), Port: 1} }
	srv := &net.UDPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 3478}
	type step struct {
		op   string // admit, created, deleted
		user string
		src  net.Addr
		at   time.Duration
		want bool // for admit
	}
	for _, tc := range []struct {
		name           string
		maxUser, maxIP int
		steps          []step
	}{
		{"unconfirmed slot expires", 1, 9, []step{
			{"admit", "u", a, 0, true},
			{"admit", "u", b, time.Second, false},
			{"admit", "u", b, pendingTTL + time.Second, true},
		}},
		{"same address asking again gives its slot back", 1, 9, []step{
			{"admit", "u", a, 0, true},
			{"admit", "u", a, time.Second, true},
			{"admit", "u", b, 2 * time.Second, false},
		}},
		{"confirmed slot lasts until deleted", 1, 9, []step{
			{"admit", "u", a, 0, true},
			{"created", "u", a, 0, false},
			{"admit", "u", b, time.Hour, false},
			{"deleted", "u", a, time.Hour, false},
			{"admit", "u", b, time.Hour, true},
		}},
		{"creation without a pending slot still counts", 1, 9, []step{
			{"created", "u", a, 0, false},
			{"admit", "u", b, 0, false},
			{"deleted", "u", a, 0, false},
			{"deleted", "u", a, 0, false},
			{"admit", "u", b, 0, true},
			{"admit", "v", b, 0, true},
		}},
		{"per IP across ports", 9, 1, []step{
			{"admit", "u", a, 0, true},
			{"created", "u", a, 0, false},
			{"admit", "v", a2, 0, false},
			{"admit", "v", b, 0, true},
		}},
		{"IPv6 counts per /64", 9, 1, []step{
			{"admit", "u", v6("2001:db8::1"), 0, true},
			{"admit", "v", v6("2001:db8::2"), 0, false},
			{"admit", "w", v6("2001:db8:0:1::1"), 0, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newQuota(tc.maxUser, tc.maxIP, &counters{})
			t0 := time.Now()
			for i, s := range tc.steps {
				switch s.op {
				case "admit":
					if got := q.admit(s.user, s.src, t0.Add(s.at)); got != s.want {
						t.Fatalf("step %d: admit(%s, %v) = %v, want %v", i, s.user, s.src, got, s.want)
					}
				case "created":
					q.created(s.src, srv, s.user)
				case "deleted":
					q.deleted(s.src, srv)
				}
			}
			for k, n := range q.perUser {
				if n < 0 {
					t.Fatalf("user %s at %d", k, n)
				}
			}
		})
	}
}
