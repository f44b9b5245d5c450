package dht

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	adht "github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	k_nearest_nodes "github.com/anacrolix/dht/v2/k-nearest-nodes"
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

// ErrNotFound means the search ended without any valid record.
var ErrNotFound = errors.New("dht: no record found for this key")

// GetOptions tune Get.
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
	target := bep44.MakeMutableTarget(key, nil)
	found := make(chan *record.SignedPacket, 64)
	var responses, invalid atomic.Int64
	op := traversal.Start(traversal.OperationInput{
		Alpha:  lookupAlpha,
		K:      putK, // search as wide as puts store, so a lookup meets them
		Target: target,
		DoQuery: func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
			res := n.srv.Get(qctx, adht.NewAddr(addr.UDP()), target, seqArg, adht.QueryRateLimiting{})
			if r := res.Reply.R; r != nil {
				responses.Add(1)
				if r.V != nil {
					if p, err := itemPacket(key, r); err != nil {
						invalid.Add(1)
						n.log.Debug("dht: ignored an invalid record", "from", addr.String(), "err", err)
					} else {
						select {
						case found <- p:
						default: // more answers than we can use; the buffer has plenty
						}
					}
				}
			}
			return traversalResult(res, addr)
		},
		NodeFilter: n.srv.TraversalNodeFilter,
	})
	defer op.Stop()
	if err := startFrom(n, op); err != nil {
		return nil, st, err
	}
	var best *record.SignedPacket
	var grace <-chan time.Time
	done := false
	for !done {
		select {
		case p := <-found:
			st.Values++
			if best == nil || p.Timestamp > best.Timestamp {
				best = p
			}
			if grace == nil {
				grace = time.After(o.Grace)
			}
		case <-grace:
			done = true
		case <-op.Stalled():
			if !reallyStalled(op) {
				continue
			}
			// Drain what arrived while the last queries finished.
			for len(found) > 0 {
				p := <-found
				st.Values++
				if best == nil || p.Timestamp > best.Timestamp {
					best = p
				}
			}
			done = true
		case <-ctx.Done():
			done = true
		}
	}
	st.Responses, st.Invalid, st.Elapsed = int(responses.Load()), int(invalid.Load()), time.Since(start)
	if best != nil {
		return best, st, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, st, fmt.Errorf("dht: lookup stopped after %d answers: %w", st.Responses, err)
	}
	return nil, st, fmt.Errorf("%w (%d nodes answered, %d invalid records ignored)", ErrNotFound, st.Responses, st.Invalid)
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

// itemPacket checks a get reply's item and turns it into a SignedPacket.
func itemPacket(key identity.PublicKey, r *krpc.Return) (*record.SignedPacket, error) {
	if r.K != key {
		return nil, errors.New("item is for another key")
	}
	if r.Seq == nil || *r.Seq < 0 {
		return nil, errors.New("item has no valid seq")
	}
	var v []byte
	if err := bencode.Unmarshal(r.V, &v); err != nil {
		return nil, fmt.Errorf("item value is not a byte string: %w", err)
	}
	p := &record.SignedPacket{PublicKey: key, Signature: r.Sig, Timestamp: uint64(*r.Seq), DNS: v}
	if err := p.VerifySignature(); err != nil {
		return nil, err
	}
	return p, nil
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
	start := time.Now()
	var res PutResult
	if err := p.VerifySignature(); err != nil {
		return res, fmt.Errorf("dht: refusing to publish: %w", err)
	}
	if err := n.ensureBootstrapped(ctx); err != nil {
		return res, err
	}
	key := [32]byte(p.PublicKey)
	target := bep44.MakeMutableTarget(key, nil)
	var newest atomic.Int64
	// Search for the closest nodes (and their tokens), leaving time for the puts.
	searchEnd := start.Add(30 * time.Second)
	if dl, ok := ctx.Deadline(); ok {
		searchEnd = start.Add(time.Until(dl) * 3 / 4)
	}
	searchCtx, cancel := context.WithDeadline(ctx, searchEnd)
	defer cancel()
	op := traversal.Start(traversal.OperationInput{
		Alpha:  lookupAlpha,
		K:      putK,
		Target: target,
		DoQuery: func(qctx context.Context, addr krpc.NodeAddr) traversal.QueryResult {
			r := n.srv.Get(qctx, adht.NewAddr(addr.UDP()), target, nil, adht.QueryRateLimiting{})
			if rr := r.Reply.R; rr != nil && rr.Seq != nil && rr.V != nil {
				if q, err := itemPacket(p.PublicKey, rr); err == nil {
					for {
						cur := newest.Load()
						if int64(q.Timestamp) <= cur || newest.CompareAndSwap(cur, int64(q.Timestamp)) {
							break
						}
					}
				}
			}
			return traversalResult(r, addr)
		},
		NodeFilter: n.srv.TraversalNodeFilter,
	})
	if err := startFrom(n, op); err != nil {
		op.Stop()
		return res, err
	}
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
	if res.Newest > p.Timestamp {
		res.Elapsed = time.Since(start)
		return res, fmt.Errorf("%w (seq %d > %d); was this key published from another device, or did the clock go back?", ErrOutdated, res.Newest, p.Timestamp)
	}
	put := bep44.Put{V: p.DNS, K: &key, Sig: p.Signature, Seq: int64(p.Timestamp), Cas: int64(cas)}
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
		return res, fmt.Errorf("dht: none of %d nodes stored the record: %v", res.Tried, res.Errors)
	}
	return res, nil
}
