package stunturn

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/turn/v5"
	"golang.org/x/time/rate"
)

var (
	errFull     = errors.New("stunturn: server at MaxAllocations")
	errTCPRelay = errors.New("stunturn: TCP relays are not offered")
)

// relayGen opens relay sockets (through pion's static generator) and
// wraps each in a relayConn that enforces the per-allocation byte quota
// and rate. It also keeps every open relay, so that MaxAllocations is
// exact, Close can free the ports at once, and permission events can
// find the relay they are about.
type relayGen struct {
	static *turn.RelayAddressGeneratorStatic
	max    int
	bytes  int64
	rate   rate.Limit // 0: no rate limit
	burst  int
	stats  *counters
	log    *slog.Logger

	mu     sync.Mutex
	closed bool
	conns  map[string]*relayConn // by advertised relay address
}

var _ turn.RelayAddressGenerator = (*relayGen)(nil)

func (g *relayGen) Validate() error { return g.static.Validate() }

// AllocatePacketConn holds the lock across the bind so that
// MaxAllocations cannot be overshot; a bind is quick.
func (g *relayGen) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, nil, errClosed
	}
	if len(g.conns) >= g.max {
		g.stats.refused.Add(1)
		g.log.Debug("stunturn: allocation refused, server full", "user", c.UserID)
		return nil, nil, errFull
	}
	pc, addr, err := g.static.AllocatePacketConn(c)
	if err != nil {
		return nil, nil, err
	}
	rc := &relayConn{PacketConn: pc, g: g, key: addr.String(), peers: map[netip.Addr]int{}}
	rc.left.Store(g.bytes)
	if g.rate != 0 {
		rc.lim = rate.NewLimiter(g.rate, g.burst)
	}
	g.conns[rc.key] = rc
	return rc, addr, nil
}

// AllocateListener refuses RFC 6062 TCP relays: their traffic would
// bypass relayConn's accounting. Clients get 508.
func (g *relayGen) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errTCPRelay
}

// AllocateConn refuses RFC 6062 Connect, as AllocateListener does.
func (g *relayGen) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errTCPRelay
}

// permit counts a permission or channel (d = 1) or its end (d = -1)
// for peer on the relay at relay.
func (g *relayGen) permit(relay net.Addr, peer net.IP, d int) {
	ip, ok := netip.AddrFromSlice(peer)
	if relay == nil || !ok {
		return
	}
	g.mu.Lock()
	rc := g.conns[relay.String()]
	g.mu.Unlock()
	if rc == nil {
		return
	}
	ip = ip.Unmap()
	rc.mu.Lock()
	if rc.peers[ip] += d; rc.peers[ip] <= 0 {
		delete(rc.peers, ip)
	}
	rc.mu.Unlock()
}

func (g *relayGen) forget(rc *relayConn) {
	g.mu.Lock()
	if g.conns[rc.key] == rc {
		delete(g.conns, rc.key)
	}
	g.mu.Unlock()
}

// closeAll closes every relay and refuses new ones.
func (g *relayGen) closeAll() {
	g.mu.Lock()
	g.closed = true
	conns := make([]*relayConn, 0, len(g.conns))
	for _, rc := range g.conns {
		conns = append(conns, rc)
	}
	g.mu.Unlock()
	for _, rc := range conns {
		rc.Close()
	}
}

// relayConn is one allocation's relay socket. pion reads from it what
// peers send and writes to it what the client sends; both count
// against the allocation's bytes and rate, and what is over either is
// dropped: WriteTo reports it sent, ReadFrom skips it.
//
// Packets from peers with no permission or channel pass uncounted:
// pion drops them right after ReadFrom, and counting them would let
// anyone who finds the relay port use up its quota.
type relayConn struct {
	net.PacketConn
	g    *relayGen
	key  string
	left atomic.Int64  // bytes the allocation may still relay
	lim  *rate.Limiter // nil: no rate limit
	over atomic.Bool   // logged going over the byte quota
	once sync.Once

	mu    sync.Mutex
	peers map[netip.Addr]int // permissions and channels per peer IP
}

func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.permitted(addr) || c.take(n) {
			return n, addr, err
		}
	}
}

func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.take(len(p)) {
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, addr)
}

// Close may come from pion and from Server.Close; the first closes.
func (c *relayConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.PacketConn.Close()
		c.g.forget(c)
	})
	return err
}

func (c *relayConn) permitted(a net.Addr) bool {
	u, ok := a.(*net.UDPAddr)
	if !ok {
		return false
	}
	ip, _ := netip.AddrFromSlice(u.IP)
	c.mu.Lock()
	n := c.peers[ip.Unmap()]
	c.mu.Unlock()
	return n > 0
}

// take spends n bytes of the quota and the rate; false: drop.
func (c *relayConn) take(n int) bool {
	for {
		left := c.left.Load()
		if left < int64(n) {
			if !c.over.Swap(true) {
				c.g.log.Debug("stunturn: allocation used its byte quota", "relay", c.key)
			}
			return false
		}
		if c.left.CompareAndSwap(left, left-int64(n)) {
			break
		}
	}
	if c.lim != nil && !c.lim.AllowN(time.Now(), n) {
		c.left.Add(int64(n))
		return false
	}
	c.g.stats.bytes.Add(uint64(n))
	return true
}
