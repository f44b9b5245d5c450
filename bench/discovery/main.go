// Command discovery measures keyhole's discovery layer on a loopback DHT
// testnet of real nodes: how long resolving a key takes (cold and cached)
// and how many nodes store each publication. The peer measured in the
// same run is anacrolix/dht's own getput.Get, the full-search lookup
// keyhole's fast lookup replaces.
//
//	go run ./bench/discovery -nodes 100 -keys 100
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/exts/getput"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
	"github.com/keyhole-p2p/keyhole/resolve"
)

func main() {
	nodes := flag.Int("nodes", 100, "testnet size")
	keys := flag.Int("keys", 100, "keys to publish and resolve (bounded loop)")
	flag.Parse()
	if err := run(*nodes, *keys); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(nodes, keys int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	tn, err := dht.StartTestnet(ctx, nodes, dht.TestnetOptions{})
	if err != nil {
		return err
	}
	defer tn.Close()
	startup := time.Since(start)

	var stored []float64
	var pubs []identity.PublicKey
	for i := 0; i < keys; i++ {
		k, _ := identity.Generate()
		dns, _ := record.EncodeZone(k.Public(), []record.RR{record.TXT("_b", 300, []byte("bench"))})
		p, _ := record.Sign(k, dns, record.Micros(time.Now()))
		pctx, c := context.WithTimeout(ctx, 20*time.Second)
		r, err := tn.Nodes[(i*7)%nodes].Put(pctx, p, 0)
		c()
		if err != nil {
			return fmt.Errorf("put %d: %w", i, err)
		}
		stored = append(stored, float64(r.Stored))
		pubs = append(pubs, k.Public())
	}

	// Resolve each key from a node that did not publish it, first with every
	// node up, then after a fifth of them left (as nodes do on the real DHT).
	type result struct {
		cold, cached, peer []float64
		misses, peerMisses int
	}
	measure := func(up func(i int) bool) (r result, err error) {
		lookupNode := func(i int) *dht.Node {
			for j := 0; ; j++ {
				if c := (i*13 + 5 + j) % nodes; up(c) {
					return tn.Nodes[c]
				}
			}
		}
		for i, key := range pubs {
			res := &resolve.Resolver{DHT: lookupNode(i), Cache: resolve.NewCache(10)}
			t := time.Now()
			if _, err := res.Resolve(ctx, key); err != nil {
				r.misses++
				continue
			}
			r.cold = append(r.cold, ms(time.Since(t)))
			t = time.Now()
			if _, err := res.Resolve(ctx, key); err != nil {
				return r, err
			}
			r.cached = append(r.cached, float64(time.Since(t).Nanoseconds())/1000)
		}
		for i, key := range pubs {
			t := time.Now()
			gctx, c := context.WithTimeout(ctx, 20*time.Second)
			_, _, err := getput.Get(gctx, bep44.MakeMutableTarget(key, nil), lookupNode(i).Server(), nil, nil)
			c()
			if err != nil {
				r.peerMisses++
				continue
			}
			r.peer = append(r.peer, ms(time.Since(t)))
		}
		return r, nil
	}
	all, err := measure(func(int) bool { return true })
	if err != nil {
		return err
	}
	gone := func(i int) bool { return i%5 == 4 }
	for i := range tn.Nodes {
		if gone(i) {
			tn.Nodes[i].Close()
		}
	}
	churn, err := measure(func(i int) bool { return !gone(i) })
	if err != nil {
		return err
	}

	fmt.Printf("testnet: %d nodes on loopback, started in %v; %d keys\n\n", nodes, startup.Round(time.Millisecond), keys)
	fmt.Println("| measurement | p50 | p95 | max | found |")
	fmt.Println("|---|---|---|---|---|")
	row := func(name string, xs []float64, miss int, unit string) {
		fmt.Printf("| %s | %.2f %s | %.2f %s | %.2f %s | %d/%d |\n", name, pct(xs, 50), unit, pct(xs, 95), unit, pct(xs, 100), unit, len(xs), len(xs)+miss)
	}
	row("nodes that stored each publication", stored, 0, "")
	for _, c := range []struct {
		name string
		r    result
	}{{"all nodes up", all}, {"20% of nodes gone", churn}} {
		row("keyhole resolve, cold, "+c.name, c.r.cold, c.r.misses, "ms")
		row("keyhole resolve, cached, "+c.name, c.r.cached, 0, "µs")
		row("peer: anacrolix getput.Get, "+c.name, c.r.peer, c.r.peerMisses, "ms")
	}
	fmt.Println()
	for _, c := range []struct {
		name string
		r    result
	}{{"all nodes up", all}, {"20% of nodes gone", churn}} {
		fmt.Printf("ratio keyhole cold / getput (%s): p50 %.2f, p95 %.2f\n", c.name, pct(c.r.cold, 50)/pct(c.r.peer, 50), pct(c.r.cold, 95)/pct(c.r.peer, 95))
	}
	return nil
}
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// pct is the p-th percentile (nearest rank) of xs.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(len(s)-1, i))]
}
