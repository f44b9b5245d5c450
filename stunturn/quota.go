package stunturn

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// pendingTTL is how long a slot admit granted waits for its
// allocation. pion creates the allocation right after asking, on the
// same goroutine, so only a failed creation (no port, server full)
// leaves a slot this old.
const pendingTTL = 5 * time.Second

// quota counts allocations per user and per client IP. pion asks admit
// before it creates an allocation and reports creation and deletion
// (expiry, Refresh with lifetime 0, a TCP client gone) as events, but
// says nothing when creation fails after admit. So admit takes a slot
// at once, keyed by the client's transport address (pion handles one
// request per client address at a time), onAllocationCreated confirms
// it, and a slot never confirmed is given back when the same address
// asks again or after pendingTTL.
type quota struct {
	maxUser, maxIP int
	stats          *counters

	mu      sync.Mutex
	perUser map[string]int
	perIP   map[netip.Addr]int
	pending map[string]slot // by client transport address
	live    map[string]slot // by client and server transport address
}

type slot struct {
	user string
	ip   netip.Addr
	at   time.Time
}

func newQuota(maxUser, maxIP int, stats *counters) *quota {
	return &quota{
		maxUser: maxUser, maxIP: maxIP, stats: stats,
		perUser: map[string]int{}, perIP: map[netip.Addr]int{},
		pending: map[string]slot{}, live: map[string]slot{},
	}
}

// admit is pion's QuotaHandler; false answers 486.
func (s *Server) admit(userID, _ string, src net.Addr) bool {
	if s.quota.admit(userID, src, time.Now()) {
		return true
	}
	s.stats.refused.Add(1)
	s.log.Debug("stunturn: allocation over quota", "user", userID, "from", src)
	return false
}

func (q *quota) admit(user string, src net.Addr, now time.Time) bool {
	ip := clientIP(src)
	key := src.Network() + " " + src.String()
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, p := range q.pending {
		if now.Sub(p.at) > pendingTTL || k == key {
			q.releaseLocked(p)
			delete(q.pending, k)
		}
	}
	if q.perUser[user] >= q.maxUser || q.perIP[ip] >= q.maxIP {
		return false
	}
	q.perUser[user]++
	q.perIP[ip]++
	q.pending[key] = slot{user: user, ip: ip, at: now}
	return true
}

func (s *Server) onAllocationCreated(src, dst net.Addr, _, userID, _ string, relay net.Addr, _ int) {
	s.quota.created(src, dst, userID)
	s.log.Debug("stunturn: allocation", "user", userID, "from", src, "relay", relay)
}

func (q *quota) created(src, dst net.Addr, user string) {
	key := src.Network() + " " + src.String()
	q.mu.Lock()
	defer q.mu.Unlock()
	p, ok := q.pending[key]
	delete(q.pending, key)
	if !ok || p.user != user {
		// The slot was given back already (a creation slower than
		// pendingTTL): count the allocation anyway, it exists.
		if ok {
			q.releaseLocked(p)
		}
		p = slot{user: user, ip: clientIP(src)}
		q.perUser[p.user]++
		q.perIP[p.ip]++
	}
	q.live[liveKey(src, dst)] = p
	q.stats.allocations.Store(int64(len(q.live)))
	q.stats.total.Add(1)
}

func (s *Server) onAllocationDeleted(src, dst net.Addr, _, userID, _ string) {
	s.quota.deleted(src, dst)
	s.log.Debug("stunturn: allocation closed", "user", userID, "from", src)
}

func (q *quota) deleted(src, dst net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := liveKey(src, dst)
	if p, ok := q.live[k]; ok {
		q.releaseLocked(p)
		delete(q.live, k)
		q.stats.allocations.Store(int64(len(q.live)))
	}
}

// reset forgets everything at Close: pion reports no deletions for the
// allocations it closes then (and late ones find nothing to release).
func (q *quota) reset() {
	q.mu.Lock()
	defer q.mu.Unlock()
	clear(q.perUser)
	clear(q.perIP)
	clear(q.pending)
	clear(q.live)
	q.stats.allocations.Store(0)
}

func (q *quota) releaseLocked(p slot) {
	if q.perUser[p.user]--; q.perUser[p.user] <= 0 {
		delete(q.perUser, p.user)
	}
	if q.perIP[p.ip]--; q.perIP[p.ip] <= 0 {
		delete(q.perIP, p.ip)
	}
}

func liveKey(src, dst net.Addr) string {
	return src.Network() + " " + src.String() + " " + dst.String()
}

// clientIP is what MaxAllocationsPerIP counts by: the IP, or for IPv6
// the /64, which one subscriber usually holds whole.
func clientIP(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	addr = addr.Unmap()
	if addr.Is6() {
		addr = netip.PrefixFrom(addr, 64).Masked().Addr()
	}
	return addr
}

// udpIP is the IP of a peer address pion reports.
func udpIP(a net.Addr) net.IP {
	if u, ok := a.(*net.UDPAddr); ok {
		return u.IP
	}
	return nil
}
