package board

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/keyhole-p2p/keyhole/identity"
)

// replayCache remembers the nonces of records seen within the freshness
// window. A record older than the window is refused as stale before the
// cache is asked, so an entry can be forgotten once its record would be
// stale: the window bounds the cache, and so does max (a full cache
// refuses new records rather than forgetting fresh nonces).
type replayCache struct {
	seen   map[string]time.Time // nonce -> when it stops mattering
	max    int
	pruned time.Time
}

func newReplayCache(max int) *replayCache {
	return &replayCache{seen: map[string]time.Time{}, max: max}
}

// check records nonce and reports whether it is new. until is when the
// record it came with turns stale. full is set when the cache is at its
// bound and the nonce could not be remembered.
func (r *replayCache) check(nonce string, until, now time.Time) (fresh, full bool) {
	if now.Sub(r.pruned) > time.Second || len(r.seen) >= r.max {
		r.prune(now)
	}
	if _, ok := r.seen[nonce]; ok {
		return false, false
	}
	if len(r.seen) >= r.max {
		return false, true
	}
	r.seen[nonce] = until
	return true, false
}

func (r *replayCache) prune(now time.Time) {
	r.pruned = now
	for n, until := range r.seen {
		if now.After(until) {
			delete(r.seen, n)
		}
	}
}

// buckets is one token bucket per identity. Buckets that have refilled
// completely are forgotten, so the map holds only identities active in
// the last burst/rate seconds and cannot grow with throwaway keys beyond
// what the per-connection limit lets through.
type buckets struct {
	rate   rate.Limit
	burst  int
	m      map[identity.PublicKey]*rate.Limiter
	pruned time.Time
}

func newBuckets(r rate.Limit, burst int) *buckets {
	return &buckets{rate: r, burst: burst, m: map[identity.PublicKey]*rate.Limiter{}}
}

func (b *buckets) allow(k identity.PublicKey, now time.Time) bool {
	if now.Sub(b.pruned) > 10*time.Second {
		b.pruned = now
		for key, l := range b.m {
			if l.TokensAt(now) >= float64(b.burst) {
				delete(b.m, key)
			}
		}
	}
	l := b.m[k]
	if l == nil {
		l = rate.NewLimiter(b.rate, b.burst)
		b.m[k] = l
	}
	return l.AllowN(now, 1)
}
