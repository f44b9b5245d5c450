package board

import (
	"time"
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
