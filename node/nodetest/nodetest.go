// Package nodetest runs community nodes for tests, the way
// net/http/httptest runs servers: on loopback, with their background
// work started, announcing their real port when they have a DHT, and
// stopped when the test ends. One harness serves the node's own tests,
// its client's and anyone else's.
package nodetest

import (
	"context"
	"net"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/node"
)

// Load is a LoadMeter a test sets.
type Load struct {
	mu       sync.Mutex
	cpu, mem float64
}

// Load implements node.LoadMeter.
func (l *Load) Load() (cpu, mem float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cpu, l.mem
}

// Set changes the load the node sees from now on.
func (l *Load) Set(cpu, mem float64) {
	l.mu.Lock()
	l.cpu, l.mem = cpu, mem
	l.mu.Unlock()
}

// Start serves a node on 127.0.0.1 until the test ends and returns it
// with its base URL. Unset options get test-friendly values: a fresh
// identity, a 4-bit price (cheap to solve), a fixed zero Load, and a
// generous rate limit.
func Start(t testing.TB, o node.Options) (*node.Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, l, o)
}

// Serve is Start on a listener of the test's own (one that shapes its
// connections, say).
func Serve(t testing.TB, l net.Listener, o node.Options) (*node.Server, string) {
	t.Helper()
	if o.Identity == nil {
		k, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		o.Identity = k
	}
	if o.Pricing == nil {
		o.Pricing = &node.Pricing{Base: 4, LoadBits: 8, PostSurcharge: 0.5, MaxBits: 20}
	}
	if o.Load == nil {
		o.Load = &Load{}
	}
	if o.RatePerClient == 0 {
		o.RatePerClient = 1000
	}
	if o.DHT != nil && o.AnnouncePort == 0 {
		o.AnnouncePort = l.Addr().(*net.TCPAddr).Port
	}
	s, err := node.New(o)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s)
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		s.Close()
		cancel()
		<-done
		ts.Close()
	})
	return s, ts.URL
}
