package dht

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	adht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
	"github.com/anacrolix/torrent/bencode"

	"github.com/keyhole-p2p/keyhole/record"
)

// PutResult reports where a put landed.
type PutResult struct {
	Tried   int           // closest nodes a put was sent to
	Stored  int           // nodes that confirmed they stored it
	Refused int           // nodes that refused (most often: they hold a newer seq)
	Newest  uint64        // highest seq seen on the network before the put
	Elapsed time.Duration // whole operation
	Errors  []string      // distinct refusal reasons, for the person reading
}

// ErrOutdated means the network already holds a newer record for the key.
var ErrOutdated = errors.New("dht: the network already holds a newer record for this key")

// Put stores a verified packet on the nodes closest to its key and says
// how many stored it. cas, if non-zero, is the seq the put replaces
// (BEP 44 compare-and-swap); nodes holding anything else refuse.
func (n *Node) Put(ctx context.Context, p *record.SignedPacket, cas uint64) (PutResult, error) {
	if err := p.VerifySignature(); err != nil {
		return PutResult{}, fmt.Errorf("dht: refusing to publish: %w", err)
	}
	res, err := n.put(ctx, packetItem(p), int64(cas))
	if errors.Is(err, ErrOutdated) {
		err = fmt.Errorf("%w; was this key published from another device, or did the clock go back?", err)
	}
	return res, err
}

// PutItem stores a BEP 44 mutable item on the nodes closest to its
// target (its key and salt) and says how many stored it, as Put does for
// a Pkarr record. The item must pass Item.Verify. cas, if non-zero, is
// the seq the put replaces; nodes holding anything else refuse.
func (n *Node) PutItem(ctx context.Context, it *Item, cas int64) (PutResult, error) {
	return n.put(ctx, it, cas)
}

// put searches for the nodes closest to the item's target, then puts
// the item on each of them that gave a write token.
func (n *Node) put(ctx context.Context, it *Item, cas int64) (PutResult, error) {
	start := time.Now()
	var res PutResult
	if err := it.Verify(); err != nil {
		return res, fmt.Errorf("dht: refusing to publish: %w", err)
	}
	if cas < 0 {
		return res, fmt.Errorf("dht: refusing to publish: cas %d is negative", cas)
	}
	// Copies, so that the caller may reuse its buffers while the nodes
	// (this one included: the library stores every put locally) keep them.
	key, salt, v := it.Key, bytes.Clone(it.Salt), bytes.Clone(it.V)
	if err := n.ensureBootstrapped(ctx); err != nil {
		return res, err
	}
	var newest atomic.Int64
	// Search for the closest nodes (and their tokens), leaving time for the puts.
	searchEnd := start.Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok {
		searchEnd = start.Add(time.Until(dl) * 3 / 4)
	}
	searchCtx, cancel := context.WithDeadline(ctx, searchEnd)
	defer cancel()
	s, err := n.startSearch(key, salt, nil, nil, func(got *Item) {
		for {
			cur := newest.Load()
			if got.Seq <= cur || newest.CompareAndSwap(cur, got.Seq) {
				return
			}
		}
	})
	if err != nil {
		return res, err
	}
	op := s.op
wait:
	for {
		select {
		case <-op.Stalled():
			if reallyStalled(op) {
				break wait
			}
		case <-searchCtx.Done():
			break wait
		}
	}
	op.Stop()
	<-op.Stopped() // queries still in flight may add to Closest until then
	res.Newest = uint64(newest.Load())
	if newest.Load() > it.Seq {
		res.Elapsed = time.Since(start)
		return res, fmt.Errorf("%w (seq %d > %d)", ErrOutdated, res.Newest, it.Seq)
	}
	// bencode.Bytes goes on the wire as it is: V is already bencoded.
	put := bep44.Put{V: bencode.Bytes(v), K: &key, Salt: salt, Sig: it.Sig, Seq: it.Seq, Cas: cas}
	var mu sync.Mutex
	var wg sync.WaitGroup
	reasons := map[string]bool{}
	op.Closest().Range(func(e k_nearest_nodes.Elem) {
		token, ok := e.Data.(string)
		if !ok {
			return
		}
		res.Tried++
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := n.srv.Put(ctx, adht.NewAddr(e.Addr.UDP()), put, token, adht.QueryRateLimiting{})
			mu.Lock()
			defer mu.Unlock()
			if err := r.ToError(); err != nil {
				res.Refused++
				reasons[err.Error()] = true
				return
			}
			res.Stored++
		}()
	})
	wg.Wait()
	for r := range reasons {
		res.Errors = append(res.Errors, r)
	}
	res.Elapsed = time.Since(start)
	if res.Stored == 0 {
		if res.Tried == 0 {
			return res, fmt.Errorf("dht: found no node to store on (is the DHT reachable? check --bootstrap)")
		}
		return res, fmt.Errorf("dht: none of %d nodes stored the item: %v", res.Tried, res.Errors)
	}
	return res, nil
}
