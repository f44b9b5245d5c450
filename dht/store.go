package dht

import (
	"container/list"
	"sync"

	"github.com/anacrolix/dht/v2/bep44"
)

// boundedStore holds BEP 44 items for other nodes, in RAM, at most max of
// them: when full, the item stored or refreshed longest ago goes first,
// so a flood of puts costs a fixed amount of memory.
//
// anacrolix/dht checks signatures, sizes and sequence numbers before
// calling Put, but compares CAS against the stored item's own cas field,
// which BEP 44 does not say; this store applies the BEP's rule (cas must
// equal the stored seq) and never keeps a cas, so the library's check
// always passes through to this one.
type boundedStore struct {
	mu    sync.Mutex
	max   int
	items map[bep44.Target]*list.Element // of *bep44.Item
	order *list.List
}

var _ bep44.Store = (*boundedStore)(nil)

func newBoundedStore(max int) *boundedStore {
	return &boundedStore{max: max, items: map[bep44.Target]*list.Element{}, order: list.New()}
}

func (s *boundedStore) Put(i *bep44.Item) error {
	t := i.Target()
	cp := *i // keeps the library's private creation time
	cp.Cas = 0
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[t]; ok {
		old := e.Value.(*bep44.Item)
		if i.Cas != 0 && i.Cas != old.Seq {
			return bep44.ErrCasHashMismatched
		}
		e.Value = &cp
		s.order.MoveToBack(e)
		return nil
	}
	for s.order.Len() >= s.max {
		oldest := s.order.Front()
		delete(s.items, oldest.Value.(*bep44.Item).Target())
		s.order.Remove(oldest)
	}
	s.items[t] = s.order.PushBack(&cp)
	return nil
}

func (s *boundedStore) Get(t bep44.Target) (*bep44.Item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.items[t]
	if !ok {
		return nil, bep44.ErrItemNotFound
	}
	return e.Value.(*bep44.Item), nil
}

func (s *boundedStore) Del(t bep44.Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.items[t]; ok {
		s.order.Remove(e)
		delete(s.items, t)
	}
	return nil
}

// Len is the number of items held.
func (s *boundedStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}
