package dht

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
)

// Testnet is a private Mainline DHT of real nodes on one host (loopback
// by default): the same protocol as the public network, for tests, the
// demo and anyone who wants to try keyhole without touching the internet.
type Testnet struct {
	Nodes []*Node
}

// TestnetOptions configure StartTestnet.
type TestnetOptions struct {
	// Host is the IP every node binds; empty means 127.0.0.1.
	Host string
	// FirstPort, if non-zero, makes the bootstrap node listen on this port
	// (the others take any free port).
	FirstPort int
	Logger    *slog.Logger
}

// seedNodes is how many nodes serve as the testnet's bootstrap list.
const seedNodes = 4

// StartTestnet starts n nodes and joins them into one network: every node
// bootstraps from the first few, twice, so that early nodes also learn
// about late ones.
func StartTestnet(ctx context.Context, n int, o TestnetOptions) (*Testnet, error) {
	if n < 1 {
		return nil, errors.New("dht: a testnet needs at least one node")
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	tn := &Testnet{}
	fail := func(err error) (*Testnet, error) {
		tn.Close()
		return nil, err
	}
	// Seeds first, so everyone else can bootstrap from them.
	var seeds []string
	for i := 0; i < n; i++ {
		addr := netip.AddrPortFrom(netip.MustParseAddr(o.Host), 0).String()
		if i == 0 && o.FirstPort != 0 {
			addr = netip.AddrPortFrom(netip.MustParseAddr(o.Host), uint16(o.FirstPort)).String()
		}
		boot := seeds
		if len(boot) == 0 {
			boot = []string{addr} // the first node has no one yet; replaced below
		}
		node, err := New(Config{Addr: addr, Bootstrap: append([]string(nil), boot...), Testnet: true, Logger: o.Logger})
		if err != nil {
			return fail(fmt.Errorf("dht: testnet node %d: %w", i, err))
		}
		tn.Nodes = append(tn.Nodes, node)
		if i < seedNodes {
			seeds = append(seeds, node.Addr().String())
		}
	}
	// Seeds know each other directly.
	for i := 0; i < min(seedNodes, n); i++ {
		for j := 0; j < min(seedNodes, n); j++ {
			if i != j {
				tn.Nodes[i].AddNode(tn.Nodes[j].Addr())
			}
		}
	}
	// Seeds learn everyone, as the public DHT's routers do: a node is added
	// to a routing table only once it has answered a query from it, so
	// seeds that never query the newcomers would keep answering lookups
	// with each other alone, and the newcomers would stay isolated (seen
	// on a third to a half of the nodes of a 200-node testnet).
	if err := tn.seedsPingAll(ctx); err != nil {
		return fail(err)
	}
	for round := 0; round < 3; round++ {
		if err := tn.bootstrapAll(ctx); err != nil {
			return fail(err)
		}
	}
	return tn, nil
}

// seedsPingAll has every seed ping every other node, a bounded number at
// a time.
func (t *Testnet) seedsPingAll(ctx context.Context) error {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, seed := range t.Nodes[:min(seedNodes, len(t.Nodes))] {
		for _, other := range t.Nodes[min(seedNodes, len(t.Nodes)):] {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				seed.AddNode(other.Addr())
			}()
		}
	}
	wg.Wait()
	return ctx.Err()
}

// bootstrapAll bootstraps every node, a bounded number at a time.
func (t *Testnet) bootstrapAll(ctx context.Context) error {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, node := range t.Nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, _ = node.srv.BootstrapContext(ctx)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// Bootstrap lists addresses to join the testnet through.
func (t *Testnet) Bootstrap() []string {
	var out []string
	for _, n := range t.Nodes[:min(seedNodes, len(t.Nodes))] {
		out = append(out, n.Addr().String())
	}
	return out
}

// Close stops every node.
func (t *Testnet) Close() {
	for _, n := range t.Nodes {
		n.Close()
	}
}
