package dht

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"github.com/anacrolix/dht/v2/krpc"
	peer_store "github.com/anacrolix/dht/v2/peer-store"
)

// Per-info-hash bounds of a peerStore. A get_peers reply lists every
// peer held for the hash, so maxPeersPerHash keeps it inside one UDP
// datagram (IPv6 peers take 21 bytes each). maxPortsPerIP lets a few
// services share a machine while one address cannot push everyone else
// out of a well-known hash.
const (
	maxPeersPerHash = 100
	maxPortsPerIP   = 8
)

// peerStore holds the BEP 5 announcements other nodes make to this one,
// in RAM, at most max of them: when full, the one announced longest ago
// goes first. An announcement lives for lifetime unless renewed.
//
// anacrolix/dht stores no peers at all unless given a store, and its own
// in-memory store keeps one entry per IP for each hash, so of two
// services on one machine only the last to announce would be found; it
// is also unbounded. This one keys entries by IP and port.
type peerStore struct {
	mu       sync.Mutex
	max      int
	lifetime time.Duration
	now      func() time.Time
	hashes   map[peer_store.InfoHash]map[netip.AddrPort]*list.Element // of *peerEntry
	order    *list.List                                               // least recently announced first
}

type peerEntry struct {
	hash peer_store.InfoHash
	addr netip.AddrPort
	at   time.Time
}

var _ peer_store.Interface = (*peerStore)(nil)

func newPeerStore(max int, lifetime time.Duration) *peerStore {
	return &peerStore{
		max:      max,
		lifetime: lifetime,
		now:      time.Now,
		hashes:   map[peer_store.InfoHash]map[netip.AddrPort]*list.Element{},
		order:    list.New(),
	}
}

// AddPeer records (or renews) an announcement. Peers with no usable
// address are dropped (see peerAddr).
func (s *peerStore) AddPeer(h peer_store.InfoHash, na krpc.NodeAddr) {
	addr, ok := peerAddr(na)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.expireLocked(now)
	peers := s.hashes[h]
	if e, ok := peers[addr]; ok {
		e.Value.(*peerEntry).at = now
		s.order.MoveToBack(e)
		return
	}
	if peers == nil {
		peers = map[netip.AddrPort]*list.Element{}
		s.hashes[h] = peers
	}
	// Make room: first under this IP, then under this hash, then overall.
	var sameIP []*list.Element
	for a, e := range peers {
		if a.Addr() == addr.Addr() {
			sameIP = append(sameIP, e)
		}
	}
	if len(sameIP) >= maxPortsPerIP {
		s.removeLocked(oldest(sameIP))
	}
	if len(peers) >= maxPeersPerHash {
		all := make([]*list.Element, 0, len(peers))
		for _, e := range peers {
			all = append(all, e)
		}
		s.removeLocked(oldest(all))
	}
	for s.order.Len() > 0 && s.order.Len() >= s.max {
		s.removeLocked(s.order.Front())
	}
	if s.hashes[h] == nil { // emptied by the evictions above
		s.hashes[h] = peers
	}
	peers[addr] = s.order.PushBack(&peerEntry{hash: h, addr: addr, at: now})
}

// GetPeers lists the live announcements for h.
func (s *peerStore) GetPeers(h peer_store.InfoHash) []krpc.NodeAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(s.now())
	var out []krpc.NodeAddr
	for a := range s.hashes[h] {
		out = append(out, krpc.NodeAddr{IP: a.Addr().AsSlice(), Port: int(a.Port())})
	}
	return out
}

// Len is the number of announcements held.
func (s *peerStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}

// expireLocked drops the announcements older than the lifetime; they are
// at the front, since a renewal moves an entry to the back.
func (s *peerStore) expireLocked(now time.Time) {
	for e := s.order.Front(); e != nil && now.Sub(e.Value.(*peerEntry).at) >= s.lifetime; e = s.order.Front() {
		s.removeLocked(e)
	}
}

func (s *peerStore) removeLocked(e *list.Element) {
	pe := s.order.Remove(e).(*peerEntry)
	peers := s.hashes[pe.hash]
	delete(peers, pe.addr)
	if len(peers) == 0 {
		delete(s.hashes, pe.hash)
	}
}

// oldest is the entry announced longest ago.
func oldest(es []*list.Element) *list.Element {
	o := es[0]
	for _, e := range es[1:] {
		if e.Value.(*peerEntry).at.Before(o.Value.(*peerEntry).at) {
			o = e
		}
	}
	return o
}

// peerAddr converts a peer's address, refusing the ones nobody can
// connect to (port 0, unspecified, multicast or broadcast IP).
func peerAddr(na krpc.NodeAddr) (netip.AddrPort, bool) {
	ip, ok := netip.AddrFromSlice(na.IP)
	if !ok || na.Port <= 0 || na.Port > 65535 {
		return netip.AddrPort{}, false
	}
	ip = ip.Unmap()
	if ip.IsUnspecified() || ip.IsMulticast() || ip == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(na.Port)), true
}
