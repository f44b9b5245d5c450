package node

import (
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
)

// DHT is what the node needs from its Mainline DHT node (*dht.Node).
type DHT interface {
	GetItem(ctx context.Context, key [32]byte, salt []byte, o dht.GetOptions) (*dht.Item, dht.GetStats, error)
	PutItem(ctx context.Context, it *dht.Item, cas int64) (dht.PutResult, error)
	Announce(ctx context.Context, infohash [20]byte, port int) ([]netip.AddrPort, error)
	Peers(ctx context.Context, infohash [20]byte) ([]netip.AddrPort, error)
}

// NetworkInfohash is where the nodes of network announce themselves on
// the DHT: SHA-1("keyhole-node-v1") for the public mesh, or
// SHA-1("keyhole-node-v1:" + network) for a private one.
func NetworkInfohash(network string) [20]byte {
	s := "keyhole-node-v1"
	if network != "" {
		s += ":" + network
	}
	return sha1.Sum([]byte(s))
}

// discoverLoop announces the node and looks for others: soon after start
// (when the node most needs peers, and others may be starting too), then
// every AnnounceInterval.
func (s *Server) discoverLoop(ctx context.Context) {
	delay := min(2*time.Second, s.opts.AnnounceInterval)
	for {
		s.discoverOnce(ctx)
		s.peers.expire(s.opts.Now().Add(-3 * max(s.opts.AnnounceInterval, 10*time.Minute)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, s.opts.AnnounceInterval)
	}
}

// discoverOnce runs one round: announce on (or search) the DHT, then ask
// every node found, and every configured peer, who it is.
func (s *Server) discoverOnce(ctx context.Context) {
	var urls []string
	if s.opts.DHT != nil {
		actx, cancel := context.WithTimeout(ctx, time.Minute)
		ih := NetworkInfohash(s.opts.Network)
		var addrs []netip.AddrPort
		var err error
		if s.opts.AnnouncePort != 0 {
			addrs, err = s.opts.DHT.Announce(actx, ih, s.opts.AnnouncePort)
		} else {
			addrs, err = s.opts.DHT.Peers(actx, ih)
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("node: looking for other nodes on the DHT failed", "err", err)
		}
		for _, a := range addrs {
			urls = append(urls, "http://"+a.String())
		}
	}
	probe := func(u string, static bool) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		key, url, err := Identify(pctx, s.client, u)
		if err != nil {
			s.log.Debug("node: a node did not answer", "url", u, "err", err)
			return
		}
		if key == s.key {
			// Ourselves, found on the DHT; or another process started
			// with this node's key file, which the mesh cannot tell apart.
			if s.opts.PublicURL != "" && url != s.opts.PublicURL {
				s.log.Warn("node: another node at "+url+" uses this node's key; give each node its own --key-file or --home", "self", s.opts.PublicURL)
			}
			return
		}
		if s.peers.add(key, url, s.opts.Now(), static) {
			s.log.Info("node: found a node", "node", key.String(), "url", url)
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, u := range append(s.opts.Peers, urls...) {
		static := i < len(s.opts.Peers)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			probe(u, static)
		})
	}
	wg.Wait()
	s.m.peers.Set(float64(s.peers.len()))
}

// Identify asks the node at base who it is and returns its key and the
// URL to use for it. A node may name a public URL other than the address
// it was found at (a domain, TLS); that URL is used only if it answers
// with the same key, so a node cannot point others at a third party.
func Identify(ctx context.Context, c *http.Client, base string) (identity.PublicKey, string, error) {
	base, err := normalizeURL(base)
	if err != nil {
		return identity.PublicKey{}, "", err
	}
	in, err := FetchInfo(ctx, c, base)
	if err != nil {
		return identity.PublicKey{}, "", err
	}
	key, err := identity.ParseKey(in.Node)
	if err != nil {
		return identity.PublicKey{}, "", fmt.Errorf("%s names no valid node key: %w", base, err)
	}
	if declared, err := normalizeURL(in.URL); err == nil && declared != base {
		if again, err := FetchInfo(ctx, c, declared); err == nil && again.Node == in.Node {
			return key, declared, nil
		}
	}
	return key, base, nil
}

// FetchInfo asks the node at base for its self-description (GET / as
// JSON): what clients read to choose a node and what nodes read to
// check each other.
func FetchInfo(ctx context.Context, c *http.Client, base string) (*Info, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/: %s", base, resp.Status)
	}
	var in Info
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&in); err != nil {
		return nil, fmt.Errorf("%s/ is not a keyhole node: %w", base, err)
	}
	if in.Node == "" {
		return nil, errors.New(base + "/ is not a keyhole node: no node key")
	}
	return &in, nil
}
