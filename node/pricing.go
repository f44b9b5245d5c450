package node

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// Pricing sets how much work the node asks (node/PROTOCOL.md):
//
//	bits = round(Base + LoadBits*max(cpu, mem) + log2(1 + posts*PostSurcharge))
//
// capped at MaxBits, where posts counts the requester's room posts in the
// past minute. Each post thus makes the next ones dearer, linearly in
// expected hashes, so one client cannot hold a room's bandwidth cheaply.
type Pricing struct {
	Base          float64
	LoadBits      float64
	PostSurcharge float64
	MaxBits       int
}

// DefaultPricing is what a node asks unless told otherwise: 14 bits
// (a few milliseconds of a laptop core, a fraction of a second in a
// browser) when idle, up to 8 more at full load, half the base work
// again per post in the past minute, never more than 28 bits.
func DefaultPricing() Pricing {
	return Pricing{Base: 14, LoadBits: 8, PostSurcharge: 0.5, MaxBits: 28}
}

// Bits is the difficulty for a client that made posts in the past minute
// while the node's load is load.
func (p *Pricing) Bits(load float64, posts int) int {
	x := p.Base + p.LoadBits*clamp01(load) + math.Log2(1+float64(posts)*p.PostSurcharge)
	return min(max(int(math.Round(x)), 0), p.MaxBits)
}

// postCounter counts each address's room posts over the last minute in
// six ten-second slots. IPv6 addresses count per /64, the block one
// subscriber usually holds. At most max addresses are tracked; beyond
// that the oldest slot data is dropped early, which only forgives.
type postCounter struct {
	mu  sync.Mutex
	max int
	m   map[netip.Prefix]*slots
}

type slots struct {
	epoch int64 // ten-second slot number of n[0]
	n     [6]uint32
}

func newPostCounter(max int) *postCounter {
	return &postCounter{max: max, m: map[netip.Prefix]*slots{}}
}

func clientBlock(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

func slotOf(now time.Time) int64 { return now.Unix() / 10 }

// advance shifts s so that n[0] is the slot of now.
func (s *slots) advance(now int64) {
	d := now - s.epoch
	if d <= 0 {
		return
	}
	if d >= int64(len(s.n)) {
		s.n = [6]uint32{}
	} else {
		copy(s.n[d:], s.n[:len(s.n)-int(d)])
		clear(s.n[:d])
	}
	s.epoch = now
}

func (s *slots) sum() int {
	t := 0
	for _, v := range s.n {
		t += int(v)
	}
	return t
}

// add records a post by a at now.
func (c *postCounter) add(a netip.Addr, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := clientBlock(a)
	s := c.m[k]
	if s == nil {
		if len(c.m) >= c.max {
			c.prune(now)
		}
		s = &slots{epoch: slotOf(now)}
		c.m[k] = s
	}
	s.advance(slotOf(now))
	s.n[0]++
}

// count is a's posts in the past minute.
func (c *postCounter) count(a netip.Addr, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.m[clientBlock(a)]
	if s == nil {
		return 0
	}
	s.advance(slotOf(now))
	return s.sum()
}

// prune forgets addresses with no post in the past minute, and if that
// is not enough, everyone. Callers hold mu.
func (c *postCounter) prune(now time.Time) {
	for k, s := range c.m {
		s.advance(slotOf(now))
		if s.sum() == 0 {
			delete(c.m, k)
		}
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
}
