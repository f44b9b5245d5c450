package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/keyhole-p2p/keyhole/internal/atomicfile"
	"github.com/keyhole-p2p/keyhole/node"
)

// PeerFinder is the DHT search Discover needs (*dht.Node has it).
type PeerFinder interface {
	Peers(ctx context.Context, infohash [20]byte) ([]netip.AddrPort, error)
}

// Found is a node a client knows: its key and where it answered.
type Found struct {
	Key  string    `json:"key"`
	URL  string    `json:"url"`
	Seen time.Time `json:"seen"`
}

// Discover finds the nodes of network on the DHT: the addresses
// announced under the network's info-hash, each asked who it is. Only
// nodes that answer with a valid key count; a node naming a public URL
// is recorded there only if that URL answers with the same key.
func (c *Client) Discover(ctx context.Context, d PeerFinder, network string) ([]Found, error) {
	addrs, err := d.Peers(ctx, node.NetworkInfohash(network))
	if err != nil && len(addrs) == 0 {
		return nil, fmt.Errorf("node: searching the DHT for nodes: %w", err)
	}
	var mu sync.Mutex
	var out []Found
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, a := range addrs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if key, url, err := node.Identify(ctx, c.http(), "http://"+a.String()); err == nil {
				mu.Lock()
				out = append(out, Found{Key: key.String(), URL: url, Seen: time.Now().UTC()})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out, nil
}

// Cache is the nodes a client found, kept in a file (nodes.json in the
// keyhole home) so the next run starts from them instead of a DHT
// search. Writes are atomic; a damaged file is reported, not trusted.
type Cache struct {
	Path string
	// Max bounds the entries kept, most recently seen first; zero
	// means 64.
	Max int
}

// Load reads the cache; a missing file is an empty cache.
func (c Cache) Load() ([]Found, error) {
	raw, err := os.ReadFile(c.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node cache: %w", err)
	}
	var v struct {
		Nodes []Found `json:"nodes"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("node cache %s is damaged (%v); delete it and it is rebuilt from the DHT", c.Path, err)
	}
	return v.Nodes, nil
}

// Merge adds found to the cache (newer sightings replace older ones of
// the same key), keeps the most recent Max, and writes it atomically.
func (c Cache) Merge(found []Found) ([]Found, error) {
	old, err := c.Load()
	if err != nil {
		old = nil // rebuilt from what was just found
	}
	byKey := map[string]Found{}
	for _, f := range append(old, found...) {
		if e, ok := byKey[f.Key]; !ok || f.Seen.After(e.Seen) {
			byKey[f.Key] = f
		}
	}
	all := make([]Found, 0, len(byKey))
	for _, f := range byKey {
		all = append(all, f)
	}
	slices.SortFunc(all, func(a, b Found) int { return b.Seen.Compare(a.Seen) })
	max := c.Max
	if max == 0 {
		max = 64
	}
	if len(all) > max {
		all = all[:max]
	}
	raw, _ := json.MarshalIndent(struct {
		Nodes []Found `json:"nodes"`
	}{all}, "", "  ")
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
		return all, fmt.Errorf("node cache: %w", err)
	}
	if err := atomicfile.Write(c.Path, append(raw, '\n'), 0o600); err != nil {
		return all, fmt.Errorf("node cache: %w", err)
	}
	return all, nil
}

// URLs lists the URLs of found nodes.
func URLs(found []Found) []string {
	out := make([]string, len(found))
	for i, f := range found {
		out[i] = f.URL
	}
	return out
}
