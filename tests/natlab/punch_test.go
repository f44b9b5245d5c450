package natlab

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// reaches reports whether a datagram sent from c to dst (three times, to
// ride out a stalled goroutine) arrives at to within negativeWait.
func reaches(t *testing.T, c *net.UDPConn, dst netip.AddrPort, to *net.UDPConn) bool {
	t.Helper()
	n := nonce()
	for range 3 {
		if _, err := c.WriteToUDPAddrPort([]byte(n), dst); err != nil {
			// No route (a private address from another LAN) is one way
			// of not reaching.
			t.Logf("send to %s: %v", dst, err)
		}
	}
	buf := make([]byte, 1500)
	to.SetReadDeadline(time.Now().Add(negativeWait))
	for {
		m, _, err := to.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:m]) == n {
			return true
		}
	}
}

// TestUnsolicited checks that a host behind a NAT cannot be reached
// without a punch: not at its private address, not at its public address
// before it has sent anything, and, once it has a mapping (it asked a
// reflector, as any peer does first), only through a full-cone NAT.
func TestUnsolicited(t *testing.T) {
	tests := []struct {
		nat                      NATType
		atPrivate, before, after bool // reached at its own IP; at PublicIP before and after it sent
	}{
		{None, true, true, true},
		{FullCone, false, false, true},
		{Restricted, false, false, false},
		{PortRestricted, false, false, false},
		{Symmetric, false, false, false},
	}
	t.Parallel()
	lab := New(t, Options{})
	r := newReflector(t, lab.Public(), lab.Public())
	type pair struct{ a, b *Host }
	pairs := make([]pair, len(tests))
	for i, tt := range tests {
		pairs[i] = pair{lab.Private(tt.nat, LinkOptions{}), lab.Private(tt.nat, LinkOptions{})}
	}
	for i, tt := range tests {
		p := pairs[i]
		t.Run(string(tt.nat), func(t *testing.T) {
			t.Parallel()
			a, b := listen(t, p.a), listen(t, p.b)
			port := localPort(b)
			if got := reaches(t, a, netip.AddrPortFrom(p.b.IP, port), b); got != tt.atPrivate {
				t.Errorf("%s -> %s at its own address: reached %v, want %v", p.a, p.b, got, tt.atPrivate)
			}
			if got := reaches(t, a, netip.AddrPortFrom(p.b.PublicIP, port), b); got != tt.before {
				t.Errorf("%s -> %s at its public address, no mapping: reached %v, want %v", p.a, p.b, got, tt.before)
			}
			mustAsk(t, b, r.mainAP, "who")
			if got := reaches(t, a, netip.AddrPortFrom(p.b.PublicIP, port), b); got != tt.after {
				t.Errorf("%s -> %s at its public address, mapped: reached %v, want %v", p.a, p.b, got, tt.after)
			}
		})
	}
}

// punchWindow bounds a punch attempt; punches that work do so in the
// first round trip.
const punchWindow = 1500 * time.Millisecond

// puncher is one side of a simultaneous-open UDP punch.
type puncher struct {
	c      *net.UDPConn
	name   string
	target netip.AddrPort // the peer's address as the reflector saw it
	got    atomic.Bool    // a datagram from the peer arrived
	from   netip.AddrPort // where it came from (valid once got)
}

// run sends "punch <name>" to the target every 20 ms and reads in
// between. When a datagram from the peer arrives, it switches the target
// to the datagram's source (a peer-reflexive address, as ICE does), which
// is what lets a cone side answer a symmetric peer. It stops when both
// sides have heard from each other, or at the deadline.
func (p *puncher) run(peer *puncher, deadline time.Time) {
	buf := make([]byte, 1500)
	target := p.target
	for time.Now().Before(deadline) && !(p.got.Load() && peer.got.Load()) {
		p.c.WriteToUDPAddrPort([]byte("punch "+p.name), target)
		p.c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		n, from, err := p.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			continue
		}
		if name, ok := strings.CutPrefix(string(buf[:n]), "punch "); ok && name == peer.name {
			if !p.got.Load() {
				p.from = from
				p.got.Store(true)
			}
			target = from
		}
	}
	// One last datagram, so that the peer hears from us even if we only
	// just learned where to send.
	p.c.WriteToUDPAddrPort([]byte("punch "+p.name), target)
}

// TestPunch checks which NAT pairs a simultaneous-open UDP punch opens,
// each side knowing only the other's reflexive address from the
// reflector: the property the dial matrix builds on. Results:
//
//	full-cone       <-> full-cone        open
//	restricted      <-> restricted       open
//	port-restricted <-> port-restricted  open
//	full-cone       <-> port-restricted  open
//	symmetric       <-> symmetric        closed: each side's port for the peer is not the one the reflector saw
//	port-restricted <-> symmetric        closed: the port-restricted side only admits the port it sent to
//	restricted      <-> symmetric        open: address filtering admits the symmetric side's new port
//	full-cone       <-> symmetric        open
//	none            <-> symmetric        open
func TestPunch(t *testing.T) {
	tests := []struct {
		a, b NATType
		open bool
	}{
		{FullCone, FullCone, true},
		{Restricted, Restricted, true},
		{PortRestricted, PortRestricted, true},
		{FullCone, PortRestricted, true},
		{Symmetric, Symmetric, false},
		{PortRestricted, Symmetric, false},
		{Restricted, Symmetric, true},
		{FullCone, Symmetric, true},
		{None, Symmetric, true},
	}
	t.Parallel()
	lab := New(t, Options{})
	r := newReflector(t, lab.Public(), lab.Public())
	hosts := make([][2]*Host, len(tests))
	for i, tt := range tests {
		hosts[i] = [2]*Host{lab.Private(tt.a, LinkOptions{}), lab.Private(tt.b, LinkOptions{})}
	}
	for i, tt := range tests {
		ha, hb := hosts[i][0], hosts[i][1]
		t.Run(string(tt.a)+"-"+string(tt.b), func(t *testing.T) {
			t.Parallel()
			a := &puncher{c: listen(t, ha), name: "a"}
			b := &puncher{c: listen(t, hb), name: "b"}
			a.target = mustAsk(t, b.c, r.mainAP, "who").seen
			b.target = mustAsk(t, a.c, r.mainAP, "who").seen
			start := time.Now()
			deadline := start.Add(punchWindow)
			var wg sync.WaitGroup
			wg.Go(func() { a.run(b, deadline) })
			wg.Go(func() { b.run(a, deadline) })
			wg.Wait()
			open := a.got.Load() && b.got.Load()
			if open {
				t.Logf("%s (%s) <-> %s (%s): open in %v; a heard b from %s, b heard a from %s",
					tt.a, b.target, tt.b, a.target, time.Since(start).Round(time.Millisecond), a.from, b.from)
			} else {
				t.Logf("%s (%s) <-> %s (%s): closed; a heard b: %v, b heard a: %v",
					tt.a, b.target, tt.b, a.target, a.got.Load(), b.got.Load())
			}
			if open != tt.open {
				t.Errorf("punch %s <-> %s: open %v, want %v", tt.a, tt.b, open, tt.open)
			}
		})
	}
}
