package dht

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	adht "github.com/anacrolix/dht/v2"
)

// Announce tells the nodes closest to infohash that a service listens on
// port at this node's IP (BEP 5 announce_peer, explicit port) and returns
// the peers already announced there (this one's own earlier announcement
// included), without duplicates. It returns when the search has ended and
// the announcements have been answered; if ctx ends first, it returns the
// peers found so far with ctx's error.
//
// Whether any node kept the announcement is not known: the library does
// not report the answers to announce_peer.
//
// Nodes forget an announcement after a while (30 minutes on keyhole's
// nodes, see Config.PeerLifetime), so a service announces again every 15
// minutes or so for as long as it runs.
func (n *Node) Announce(ctx context.Context, infohash [20]byte, port int) ([]netip.AddrPort, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("dht: cannot announce port %d", port)
	}
	return n.getPeers(ctx, infohash, adht.AnnouncePeer(adht.AnnouncePeerOpts{Port: port}))
}

// Peers returns the peers announced under infohash (BEP 5 get_peers),
// without announcing and without duplicates. It returns when the search
// has ended; if ctx ends first, it returns the peers found so far with
// ctx's error. No peer is not an error.
func (n *Node) Peers(ctx context.Context, infohash [20]byte) ([]netip.AddrPort, error) {
	return n.getPeers(ctx, infohash)
}

// getPeers runs the library's get_peers traversal (which announces at
// the end when opts say so) and collects the peers it streams.
func (n *Node) getPeers(ctx context.Context, infohash [20]byte, opts ...adht.AnnounceOpt) ([]netip.AddrPort, error) {
	if err := n.ensureBootstrapped(ctx); err != nil {
		return nil, err
	}
	a, err := n.srv.AnnounceTraversal(infohash, opts...)
	if err != nil {
		return nil, fmt.Errorf("dht: no node to start from: %w", err)
	}
	seen := map[netip.AddrPort]bool{}
	var out []netip.AddrPort
	for {
		select {
		case pv, ok := <-a.Peers:
			if !ok {
				if a.NumContacted() == 0 {
					return nil, errors.New("dht: the search asked no node; check --bootstrap")
				}
				return out, nil
			}
			for _, p := range pv.Peers {
				if addr, ok := peerAddr(p); ok && !seen[addr] {
					seen[addr] = true
					out = append(out, addr)
				}
			}
		case <-ctx.Done():
			a.Close()
			// The traversal's queries block until their replies are read,
			// and it stops only once they return.
			go func() {
				for range a.Peers {
				}
			}()
			return out, fmt.Errorf("dht: peer search stopped after %d nodes: %w", a.NumContacted(), ctx.Err())
		}
	}
}
