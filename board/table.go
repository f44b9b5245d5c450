package board

import (
	"cmp"
	"container/list"
	"encoding/json"
	"slices"

	"github.com/keyhole-p2p/keyhole/identity"
)

// entryCost is what one table entry is taken to cost, in bytes, when the
// memory budget is turned into a capacity: the record as received (a
// presence is about 400 bytes of JSON), the entry, the list element and
// its share of the indexes. BENCHMARKS.md has the measured figure.
const entryCost = 2048

type recordKind uint8

const (
	kindPresence recordKind = iota + 1
	kindIntent
)

func (k recordKind) String() string {
	if k == kindPresence {
		return "presence"
	}
	return "intent"
}

// removal says why an entry left the table. ORP allows exactly three.
type removal uint8

const (
	removedMatched    removal = iota + 1 // an intent that found its target
	removedCapacity                      // the oldest entry, pushed out
	removedSuperseded                    // a presence refreshed by its owner
)

// entry is one presence or intent in the FIFO table.
type entry struct {
	kind   recordKind
	key    identity.PublicKey // self_key
	target identity.PublicKey // intents only
	nonce  string
	raw    json.RawMessage // the signed record, for propagation
	push   string          // presence only: the push endpoint, if any
	scope  []string        // presence only: boards it may travel to
	conn   *conn           // the device's connection here; nil if gone or remote
	via    string          // remote entries: the board the device is on
	seq    uint64          // insertion order
	elem   *list.Element
}

// table is the board's one FIFO table. Its side indexes make every
// lookup O(1): presence by self_key, intents by target_key. The server's
// mutex guards it.
type table struct {
	fifo      *list.List
	presence  map[identity.PublicKey]*entry
	intents   keySets[*entry]
	onRemoved func(e *entry, why removal)
	seq       uint64
}

func newTable(onRemoved func(*entry, removal)) *table {
	return &table{
		fifo:      list.New(),
		presence:  map[identity.PublicKey]*entry{},
		intents:   keySets[*entry]{},
		onRemoved: onRemoved,
	}
}

func (t *table) len() int { return t.fifo.Len() }

// add appends e as the newest entry, first superseding the owner's
// older presence, then evicting the oldest entries until the table fits
// capacity.
func (t *table) add(e *entry, capacity int) {
	if e.kind == kindPresence {
		if old := t.presence[e.key]; old != nil {
			t.remove(old, removedSuperseded)
		}
		t.presence[e.key] = e
	} else {
		t.intents.add(e.target, e)
	}
	t.seq++
	e.seq = t.seq
	e.elem = t.fifo.PushBack(e)
	for t.fifo.Len() > max(capacity, 1) {
		t.remove(t.fifo.Front().Value.(*entry), removedCapacity)
	}
}

// remove is the one way out of the table.
func (t *table) remove(e *entry, why removal) {
	if e.elem == nil {
		return // already gone
	}
	t.fifo.Remove(e.elem)
	e.elem = nil
	if e.kind == kindPresence {
		if t.presence[e.key] == e {
			delete(t.presence, e.key)
		}
	} else {
		t.intents.remove(e.target, e)
	}
	if t.onRemoved != nil {
		t.onRemoved(e, why)
	}
}

// intentsFor returns the intents waiting for target, oldest first.
func (t *table) intentsFor(target identity.PublicKey) []*entry {
	set := t.intents[target]
	if len(set) == 0 {
		return nil
	}
	out := make([]*entry, 0, len(set))
	for e := range set {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// keySets indexes sets of values by identity key: the intents waiting
// for a target, the channels waiting for a responder. An empty set is
// deleted, so the map holds only keys with something waiting.
type keySets[V comparable] map[identity.PublicKey]map[V]struct{}

func (m keySets[V]) add(k identity.PublicKey, v V) {
	set := m[k]
	if set == nil {
		set = map[V]struct{}{}
		m[k] = set
	}
	set[v] = struct{}{}
}

func (m keySets[V]) remove(k identity.PublicKey, v V) {
	if set := m[k]; set != nil {
		delete(set, v)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}
