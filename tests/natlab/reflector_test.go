package natlab

import (
	"crypto/rand"
	"encoding/hex"
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

// reflectorPort is where reflectors listen; altPort is the second port
// on the first public host.
const (
	reflectorPort = 3478
	altPort       = 3479
)

// reflector answers every datagram with the source address it saw, the
// way a STUN server answers a Binding request, and can be asked to answer
// from another port or another address (RFC 5780's CHANGE-REQUEST), which
// is how the tests tell filtering behaviours apart.
//
// Request: "<verb> <nonce>", verb one of
//
//	who       answer from the socket that received it
//	via-port  answer from the same address, other port
//	via-addr  answer from the other public host
//
// Answer: "<nonce> <ip:port the request came from>".
type reflector struct {
	main, altPort, altAddr       *net.UDPConn
	mainAP, altPortAP, altAddrAP netip.AddrPort
	received                     atomic.Int64 // datagrams that reached main
	wg                           sync.WaitGroup
	closeOnce                    sync.Once
}

// newReflector listens on p1:3478, p1:3479 and p2:3478 and serves until
// the test ends.
func newReflector(t testing.TB, p1, p2 *Host) *reflector {
	t.Helper()
	r := &reflector{
		mainAP:    netip.AddrPortFrom(p1.IP, reflectorPort),
		altPortAP: netip.AddrPortFrom(p1.IP, altPort),
		altAddrAP: netip.AddrPortFrom(p2.IP, reflectorPort),
	}
	var err error
	if r.main, err = p1.ListenUDP(reflectorPort); err != nil {
		t.Fatal(err)
	}
	if r.altPort, err = p1.ListenUDP(altPort); err != nil {
		t.Fatal(err)
	}
	if r.altAddr, err = p2.ListenUDP(reflectorPort); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*net.UDPConn{r.main, r.altPort, r.altAddr} {
		r.wg.Add(1)
		go r.serve(c)
	}
	t.Cleanup(r.close)
	return r
}

func (r *reflector) close() {
	r.closeOnce.Do(func() {
		r.main.Close()
		r.altPort.Close()
		r.altAddr.Close()
		r.wg.Wait()
	})
}

func (r *reflector) serve(c *net.UDPConn) {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		if c == r.main {
			r.received.Add(1)
		}
		verb, nonce, _ := strings.Cut(string(buf[:n]), " ")
		out := c
		switch verb {
		case "via-port":
			out = r.altPort
		case "via-addr":
			out = r.altAddr
		}
		out.WriteToUDPAddrPort([]byte(nonce+" "+from.String()), from)
	}
}

func nonce() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// answer is what one request to a reflector brought back.
type answer struct {
	seen netip.AddrPort // the request's source as the reflector saw it
	from netip.AddrPort // where the answer came from
	rtt  time.Duration
}

// ask sends "verb nonce" to dst from c and waits up to wait for the
// matching answer, ignoring stale answers to earlier requests. ok is
// false if none came.
func ask(t testing.TB, c *net.UDPConn, dst netip.AddrPort, verb string, wait time.Duration) (answer, bool) {
	t.Helper()
	n := nonce()
	start := time.Now()
	if _, err := c.WriteToUDPAddrPort([]byte(verb+" "+n), dst); err != nil {
		t.Fatalf("send %s to %s: %v", verb, dst, err)
	}
	deadline := start.Add(wait)
	buf := make([]byte, 1500)
	for {
		c.SetReadDeadline(deadline)
		m, from, err := c.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return answer{}, false
		}
		if err != nil {
			t.Fatalf("read answer to %s: %v", verb, err)
		}
		got, seen, _ := strings.Cut(string(buf[:m]), " ")
		if got != n {
			continue
		}
		ap, err := netip.ParseAddrPort(seen)
		if err != nil {
			t.Fatalf("bad answer %q: %v", buf[:m], err)
		}
		return answer{seen: ap, from: from, rtt: time.Since(start)}, true
	}
}

// mustAsk is ask on a path that must work: it retries, since a lossless
// lab loses nothing but a slow -race run can stall a goroutine.
func mustAsk(t testing.TB, c *net.UDPConn, dst netip.AddrPort, verb string) answer {
	t.Helper()
	for range 3 {
		if a, ok := ask(t, c, dst, verb, time.Second); ok {
			return a
		}
	}
	t.Fatalf("no answer to %q from %s after 3 tries", verb, dst)
	return answer{}
}

// listen opens a UDP socket on h, closed when the test ends.
func listen(t testing.TB, h *Host) *net.UDPConn {
	t.Helper()
	c, err := h.ListenUDP(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func localPort(c *net.UDPConn) uint16 {
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
}
