// Package ratelimit keeps one token bucket per client (address, key,
// peer) for the servers that must stay fair to many clients at once: the
// board, the Pkarr relay and the community node. The set is bounded so a
// flood of throwaway identities costs a fixed amount of memory.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed is a set of token buckets, one per key, safe for concurrent use.
// Buckets that have refilled completely are forgotten (a client that
// went quiet starts over with a full bucket, which is what it would have
// anyway), and when Max keys are held the set starts over, which at worst
// briefly forgives everyone.
type Keyed[K comparable] struct {
	rate  rate.Limit
	burst int
	max   int

	mu     sync.Mutex
	m      map[K]*rate.Limiter
	pruned time.Time
}

// New returns a Keyed allowing r events per second with bursts of burst,
// holding at most max keys (zero means 100000).
func New[K comparable](r rate.Limit, burst, max int) *Keyed[K] {
	if max <= 0 {
		max = 100000
	}
	return &Keyed[K]{rate: r, burst: burst, max: max, m: map[K]*rate.Limiter{}}
}

// Allow reports whether key may have one more event at now.
func (k *Keyed[K]) Allow(key K, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Sub(k.pruned) > 10*time.Second {
		k.pruned = now
		for key, l := range k.m {
			if l.TokensAt(now) >= float64(k.burst) {
				delete(k.m, key)
			}
		}
	}
	l := k.m[key]
	if l == nil {
		if len(k.m) >= k.max {
			clear(k.m)
		}
		l = rate.NewLimiter(k.rate, k.burst)
		k.m[key] = l
	}
	return l.AllowN(now, 1)
}

// Len is how many keys are tracked.
func (k *Keyed[K]) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}
