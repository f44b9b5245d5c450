package resolve

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/keyhole-p2p/keyhole/dht"
	"github.com/keyhole-p2p/keyhole/identity"
	"github.com/keyhole-p2p/keyhole/pkarr"
	"github.com/keyhole-p2p/keyhole/record"
)

// DHTGetter is the part of a DHT node the resolver uses.
type DHTGetter interface {
	Get(ctx context.Context, key identity.PublicKey, o dht.GetOptions) (*record.SignedPacket, dht.GetStats, error)
}

// Defaults for Resolver fields left zero.
const (
	DefaultTimeout = 5 * time.Second
	DefaultGrace   = 200 * time.Millisecond
	DefaultMinTTL  = 30 * time.Second
	DefaultMaxTTL  = time.Hour
)

// ErrNotFound means no source had a valid record for the key.
var ErrNotFound = errors.New("no valid record found")

// Resolver finds records. Set the sources you have; the zero value of every
// other field has a sensible default.
type Resolver struct {
	// DHT is a DHT node; nil means relays only (as in a browser).
	DHT DHTGetter
	// Relays are Pkarr relay base URLs, queried in parallel.
	Relays []string
	// Client talks to relays; nil means a default client.
	Client *pkarr.Client
	// Cache keeps verified records; nil means no caching.
	Cache *Cache
	// Timeout bounds one Resolve when the context has no earlier deadline;
	// zero means DefaultTimeout.
	Timeout time.Duration
	// Grace is how long to wait for a newer record after the first valid
	// one, when other sources are still answering; zero means DefaultGrace.
	Grace time.Duration
	// MinTTL and MaxTTL clamp the record's own TTL for caching, so a
	// hostile TTL can neither defeat the cache nor pin a record for days.
	MinTTL, MaxTTL time.Duration
	// Window is the accepted timestamp window (record.VerifyOptions).
	Window time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Attempt is what one source said.
type Attempt struct {
	Source  string        `json:"source"`
	Seq     uint64        `json:"seq,omitempty"`
	Err     string        `json:"error,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Result is a resolved record.
type Result struct {
	Packet   *record.SignedPacket
	Records  []record.RR
	From     string        // "cache", "dht" or a relay URL
	Elapsed  time.Duration // time to the answer
	Attempts []Attempt     // every source that answered before Resolve returned
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// answer is one source's verified (or failed) reply.
type answer struct {
	source  string
	p       *record.SignedPacket
	rrs     []record.RR
	err     error
	elapsed time.Duration
}

// Resolve returns the newest valid record for key.
func (r *Resolver) Resolve(ctx context.Context, key identity.PublicKey) (*Result, error) {
	start := time.Now()
	var lastSeq uint64
	if r.Cache != nil {
		if en, ok, fresh := r.Cache.Get(key, r.now()); ok {
			if fresh {
				return &Result{Packet: en.Packet, Records: en.Records, From: "cache", Elapsed: time.Since(start)}, nil
			}
			lastSeq = en.Packet.Timestamp
		}
	}
	timeout := r.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	answers := make(chan answer, len(r.Relays)+1)
	var wg sync.WaitGroup
	launch := func(source string, fetch func(context.Context) (*record.SignedPacket, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			p, err := fetch(ctx)
			var rrs []record.RR
			if err == nil {
				rrs, err = p.Verify(record.VerifyOptions{Key: key, Now: r.now(), Window: r.Window})
			}
			if err == nil && lastSeq != 0 {
				err = p.CheckSeq(lastSeq)
			}
			answers <- answer{source: source, p: p, rrs: rrs, err: err, elapsed: time.Since(t)}
		}()
	}
	if r.DHT != nil {
		launch("dht", func(ctx context.Context) (*record.SignedPacket, error) {
			p, _, err := r.DHT.Get(ctx, key, dht.GetOptions{})
			return p, err
		})
	}
	for _, relay := range r.Relays {
		launch(relay, func(ctx context.Context) (*record.SignedPacket, error) {
			return r.Client.Get(ctx, relay, key)
		})
	}
	if r.DHT == nil && len(r.Relays) == 0 {
		return nil, fmt.Errorf("resolve %s: %w (no sources configured: give a DHT node or at least one relay)", key, ErrNotFound)
	}
	go func() { wg.Wait(); close(answers) }()

	grace := r.Grace
	if grace == 0 {
		grace = DefaultGrace
	}
	res := &Result{}
	var best *answer
	var graceC <-chan time.Time
loop:
	for {
		select {
		case a, ok := <-answers:
			if !ok {
				break loop
			}
			at := Attempt{Source: a.source, Elapsed: a.elapsed}
			if a.err != nil {
				at.Err = a.err.Error()
			} else {
				at.Seq = a.p.Timestamp
				if best == nil || a.p.Timestamp > best.p.Timestamp {
					b := a
					best = &b
					res.Elapsed = time.Since(start)
				}
				if graceC == nil {
					graceC = time.After(grace)
				}
			}
			res.Attempts = append(res.Attempts, at)
		case <-graceC:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	if best == nil {
		return nil, notFound(key, res.Attempts, ctx.Err())
	}
	res.Packet, res.Records, res.From = best.p, best.rrs, best.source
	if r.Cache != nil {
		// A failed store means a newer record raced in; ours is still valid.
		_ = r.Cache.Store(best.p, best.rrs, r.now().Add(r.ttl(best.rrs)))
	}
	return res, nil
}

// notFound explains, in one line, what every source said.
func notFound(key identity.PublicKey, attempts []Attempt, ctxErr error) error {
	var parts []string
	for _, a := range attempts {
		msg := strings.TrimPrefix(a.Err, a.Source+": ")
		msg = strings.ReplaceAll(msg, " ("+a.Source+")", "")
		parts = append(parts, a.Source+": "+msg)
	}
	if ctxErr != nil {
		parts = append(parts, "gave up waiting for the rest: "+ctxErr.Error())
	}
	return fmt.Errorf("resolve %s: %w (%s)", key, ErrNotFound, strings.Join(parts, "; "))
}

// ttl is the smallest record TTL, clamped to [MinTTL, MaxTTL].
func (r *Resolver) ttl(rrs []record.RR) time.Duration {
	lo, hi := r.MinTTL, r.MaxTTL
	if lo == 0 {
		lo = DefaultMinTTL
	}
	if hi == 0 {
		hi = DefaultMaxTTL
	}
	t := hi
	for _, rr := range rrs {
		t = min(t, time.Duration(rr.TTL)*time.Second)
	}
	return max(lo, min(hi, t))
}

// TTL exposes the caching lifetime the resolver gives these records.
func (r *Resolver) TTL(rrs []record.RR) time.Duration { return r.ttl(rrs) }
