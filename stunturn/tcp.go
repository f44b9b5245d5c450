package stunturn

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// tcpListener is what pion accepts TURN-over-TCP clients from. It fixes
// three things pion leaves to the caller: a temporary Accept error
// (EMFILE) would end pion's accept loop for good, so it is retried;
// connections are bounded in number, total and per IP, since each
// costs a goroutine; and a connection idle for tcpIdle, or not reading
// for tcpWrite, is cut, since pion never times one out.
type tcpListener struct {
	net.Listener
	max, maxPerIP int
	stats         *counters

	mu     sync.Mutex
	closed bool
	conns  map[*tcpConn]struct{}
	perIP  map[netip.Addr]int
}

func newTCPListener(ln net.Listener, maxConns, maxPerIP int, stats *counters) *tcpListener {
	return &tcpListener{
		Listener: ln, max: maxConns, maxPerIP: maxPerIP, stats: stats,
		conns: map[*tcpConn]struct{}{}, perIP: map[netip.Addr]int{},
	}
}

func (l *tcpListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		if err != nil {
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		tc := &tcpConn{Conn: c, l: l, ip: clientIP(c.RemoteAddr())}
		l.mu.Lock()
		ok := !l.closed && len(l.conns) < l.max && l.perIP[tc.ip] < l.maxPerIP
		if ok {
			l.conns[tc] = struct{}{}
			l.perIP[tc.ip]++
		}
		l.mu.Unlock()
		if ok {
			return tc, nil
		}
		l.stats.refused.Add(1)
		c.Close()
	}
}

// closeAll closes every accepted connection (the listener itself is
// pion's to close).
func (l *tcpListener) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := make([]*tcpConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type tcpConn struct {
	net.Conn
	l    *tcpListener
	ip   netip.Addr
	once sync.Once
}

func (c *tcpConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(tcpIdle))
	return c.Conn.Read(p)
}

// Write gives up after tcpWrite: a client that stops reading must not
// hold pion's goroutines for its connection and its relay forever.
func (c *tcpConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(tcpWrite))
	return c.Conn.Write(p)
}

func (c *tcpConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.Conn.Close()
		c.l.mu.Lock()
		delete(c.l.conns, c)
		if c.l.perIP[c.ip]--; c.l.perIP[c.ip] <= 0 {
			delete(c.l.perIP, c.ip)
		}
		c.l.mu.Unlock()
	})
	return err
}
