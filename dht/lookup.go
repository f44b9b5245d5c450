package dht

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	adht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/krpc"
	"github.com/anacrolix/dht/v2/traversal"
	"github.com/anacrolix/torrent/bencode"

	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/record"
)

// Lookup parameters. Alpha is how many queries run in parallel; K is how
// many closest nodes a put stores on (the Mainline convention is 8 to 20;
// more copies survive churn better).
const (
	lookupAlpha = 8
	putK        = 20
)

// ErrNotFound means the search ended without any valid record or item.
var ErrNotFound = errors.New("dht: no record found for this key")

// GetOptions tune Get and GetItem.
type GetOptions struct {
	// Grace is how long to keep listening for a newer record after the
	// first valid one arrives; zero means 150 ms.
	Grace time.Duration
	// NewerThan, if non-zero, asks nodes to send a value only if its seq
	// is greater (BEP 44's seq argument), saving bandwidth on refreshes.
	NewerThan uint64
}

// GetStats describe one lookup.
type GetStats struct {
	Responses int           // nodes that answered
	Values    int           // valid records received
	Invalid   int           // records that failed verification (forged, oversize, wrong key)
	Elapsed   time.Duration // until Get returned
}

// Get looks up the newest valid Pkarr record for key. Every value a node
// returns is verified (signature under key, size) before it counts; a
// node that lies is ignored. Get returns shortly after the first valid
// record (see GetOptions.Grace) rather than waiting for the whole search.
func (n *Node) Get(ctx context.Context, key identity.PublicKey, o GetOptions) (*record.SignedPacket, GetStats, error) {
	it, st, err := n.lookup(ctx, key, nil, o, func(it *Item) error {
		_, err := packetOf(it)
		return err
	})
	if err != nil {
		return nil, st, err
	}
	p, err := packetOf(it)
	return p, st, err
}

// GetItem looks up the newest valid BEP 44 mutable item stored under key
// and salt, the way Get looks up a Pkarr record: every item a node
// returns must pass Item.Verify under this key and salt before it counts.
func (n *Node) GetItem(ctx context.Context, key [32]byte, salt []byte, o GetOptions) (*Item, GetStats, error) {
	if len(salt) > MaxSaltSize {
		return nil, GetStats{}, fmt.Errorf("%w: salt is %d bytes, at most %d are allowed", ErrInvalidItem, len(salt), MaxSaltSize)
	}
	return n.lookup(ctx, key, salt, o, nil)
}

// lookup finds the newest item under (key, salt) that verifies and, if
// check is not nil, passes check.
func (n *Node) lookup(ctx context.Context, key [32]byte, salt []byte, o GetOptions, check func(*Item) error) (*Item, GetStats, error) {
	start := time.Now()
	var st GetStats
	if o.Grace == 0 {
		o.Grace = 150 * time.Millisecond
	}
	if err := n.ensureBootstrapped(ctx); err != nil {
		return nil, st, err
	}
	var seqArg *int64
	if o.NewerThan > 0 {
		s := int64(o.NewerThan)
		seqArg = &s
	}
	found := make(chan *Item, 64)
	s, err := n.startSearch(key, salt, seqArg, check, func(it *Item) {
		select {
		case found <- it:
		default: // more answers than we can use; the buffer has plenty
		}
	})
	if err != nil {
		return nil, st, err
	}
	defer s.op.Stop()
	var best *Item
	take := func(it *Item) {
		st.Values++
		if best == nil || it.Seq > best.Seq {
			best = it
		}
	}
	var grace <-chan time.Time
	done := false
	for !done {
		select {
		case it := <-found:
			take(it)
			if grace == nil {
				grace = time.After(o.Grace)
			}
		case <-grace:
			done = true
		case <-s.op.Stalled():
			if !reallyStalled(s.op) {
				continue
			}
			// Drain what arrived while the last queries finished.
			for len(found) > 0 {
				take(<-found)
			}
			done = true
		case <-ctx.Done():
			done = true
		}
	}
	st.Responses, st.Invalid, st.Elapsed = int(s.responses.Load()), int(s.invalid.Load()), time.Since(start)
	if best != nil {
		best.Salt = bytes.Clone(best.Salt) // queries still in flight read the search's copy
		return best, st, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, st, fmt.Errorf("dht: lookup stopped after %d answers: %w", st.Responses, err)
	}
	return nil, st, fmt.Errorf("%w (%d nodes answered, %d invalid records ignored)", ErrNotFound, st.Responses, st.Invalid)
}

// search is one BEP 44 get traversal towards an item: the single walk
// both lookups and puts use, a lookup to find values and a put to find
// the closest nodes and their write tokens.
type search struct {
	op        *traversal.Operation
	responses atomic.Int64 // nodes that answered
	invalid   atomic.Int64 // items refused
}

// startSearch starts a search for the item (key, salt), seeded from the
// routing table. seq, if not nil, is the get's seq argument. Every item
// a node returns is checked (see receivedItem); found gets the ones that
// pass, from the traversal's own goroutines.
func (n *Node) startSearch(key [32]byte, salt []byte, seq *int64, check func(*Item) error, found func(*Item)) (*search, error) {
	salt = bytes.Clone(salt)
	target := bep44.MakeMutableTarget(key, salt)
	s := &search{}
	s.op = traversal.Start(traversal.OperationInput{
		Alpha:  lookupAlpha,
		K:      putK, // search as wide as puts store, so a lookup meets them
		Target: target,
		DoQuery: func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
			res := n.srv.Get(qctx, adht.NewAddr(addr.UDP()), target, seq, adht.QueryRateLimiting{})
			if r := res.Reply.R; r != nil {
				s.responses.Add(1)
				if r.V != nil {
					if it, err := receivedItem(key, salt, r, check); err != nil {
						s.invalid.Add(1)
						n.log.Debug("dht: ignored an invalid item", "from", addr.String(), "err", err)
					} else {
						found(it)
					}
				}
			}
			return traversalResult(res, addr)
		},
		NodeFilter: n.srv.TraversalNodeFilter,
	})
	if err := startFrom(n, s.op); err != nil {
		s.op.Stop()
		return nil, err
	}
	return s, nil
}

// startFrom seeds a traversal with the routing table (or the bootstrap
// nodes when it is empty).
func startFrom(n *Node, op *traversal.Operation) error {
	nodes, err := n.srv.TraversalStartingNodes()
	if err != nil {
		return fmt.Errorf("dht: no node to start from: %w", err)
	}
	if op.AddNodes(nodes) == 0 {
		return errors.New("dht: no usable node to start from; check --bootstrap")
	}
	return nil
}

// reallyStalled filters a spurious stall: the traversal's level trigger
// can fire once before the first nodes are added, when it has not queried
// anyone yet.
func reallyStalled(op *traversal.Operation) bool {
	return atomic.LoadUint32(&op.Stats().NumAddrsTried) > 0
}

// receivedItem checks the item in a get reply for (key, salt): the right
// key, a seq, Item.Verify, then check if it is not nil.
func receivedItem(key [32]byte, salt []byte, r *krpc.Return, check func(*Item) error) (*Item, error) {
	if r.K != key {
		return nil, errors.New("item is for another key")
	}
	if r.Seq == nil {
		return nil, errors.New("item has no seq")
	}
	it := &Item{Key: r.K, Salt: salt, Seq: *r.Seq, V: r.V, Sig: r.Sig}
	if err := it.Verify(); err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(it); err != nil {
			return nil, err
		}
	}
	return it, nil
}

// itemPacket checks a get reply's item and turns it into a SignedPacket.
func itemPacket(key identity.PublicKey, r *krpc.Return) (*record.SignedPacket, error) {
	it, err := receivedItem(key, nil, r, nil)
	if err != nil {
		return nil, err
	}
	return packetOf(it)
}

// packetOf reads a verified, unsalted item as a Pkarr record: its value
// must be a byte string, the DNS packet.
func packetOf(it *Item) (*record.SignedPacket, error) {
	if len(it.Salt) > 0 {
		return nil, errors.New("a Pkarr record has no salt")
	}
	var v []byte
	if err := bencode.Unmarshal(it.V, &v); err != nil {
		return nil, fmt.Errorf("item value is not a byte string: %w", err)
	}
	return &record.SignedPacket{PublicKey: it.Key, Signature: it.Sig, Timestamp: uint64(it.Seq), DNS: v}, nil
}

// packetItem is a Pkarr record as the unsalted item that carries it.
func packetItem(p *record.SignedPacket) *Item {
	return &Item{Key: p.PublicKey, Seq: int64(p.Timestamp), V: bencode.MustMarshal(p.DNS), Sig: p.Signature}
}

// traversalResult keeps only string tokens: they are what a put needs.
func traversalResult(res adht.QueryResult, addr krpc.NodeAddr) traversal.QueryResult {
	tqr := res.TraversalQueryResult(addr)
	if _, ok := tqr.ClosestData.(string); !ok {
		tqr.ClosestData = nil
		tqr.ResponseFrom = nil
	}
	return tqr
}
