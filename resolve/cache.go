package resolve

import (
	"container/list"
	"fmt"
	"sync"
	"time"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
)

// Cache holds verified packets by key, at most a fixed number (the least
// recently stored goes first). An expired entry is no longer served as
// fresh but its seq is remembered, so an older record can never replace
// it (openhost's seq-regression rule).
type Cache struct {
	mu    sync.Mutex
	max   int
	byKey map[identity.PublicKey]*list.Element // of *Entry
	order *list.List
}

// Entry is one cached packet.
type Entry struct {
	Packet  *record.SignedPacket
	Records []record.RR
	Expires time.Time
}

// NewCache returns a cache of at most max entries (zero means 10000).
func NewCache(max int) *Cache {
	if max <= 0 {
		max = 10000
	}
	return &Cache{max: max, byKey: map[identity.PublicKey]*list.Element{}, order: list.New()}
}

// Get returns the entry for key, if any, and whether it is still fresh.
func (c *Cache) Get(key identity.PublicKey, now time.Time) (Entry, bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[key]
	if !ok {
		return Entry{}, false, false
	}
	en := *e.Value.(*Entry)
	return en, true, now.Before(en.Expires)
}

// Store adds a verified packet. It refuses (with record.ErrSeqRegression)
// a packet older than the cached one, and a different packet with the
// same seq; the same packet again only extends its lifetime.
func (c *Cache) Store(p *record.SignedPacket, rrs []record.RR, expires time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[p.PublicKey]; ok {
		old := e.Value.(*Entry)
		if err := p.CheckSeq(old.Packet.Timestamp); err != nil {
			return err
		}
		if p.Timestamp == old.Packet.Timestamp && p.Signature != old.Packet.Signature {
			return fmt.Errorf("%w: a different packet with the same seq %d", record.ErrSeqRegression, p.Timestamp)
		}
		*old = Entry{Packet: p, Records: rrs, Expires: expires}
		c.order.MoveToBack(e)
		return nil
	}
	for c.order.Len() >= c.max {
		oldest := c.order.Front()
		delete(c.byKey, oldest.Value.(*Entry).Packet.PublicKey)
		c.order.Remove(oldest)
	}
	c.byKey[p.PublicKey] = c.order.PushBack(&Entry{Packet: p, Records: rrs, Expires: expires})
	return nil
}

// Len is the number of entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
