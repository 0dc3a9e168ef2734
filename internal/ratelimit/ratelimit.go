// Package ratelimit owns the per-key token buckets of docs/protocol.md B.10
// (per-member sends, hooks): in-memory, per replica, no I/O.
package ratelimit

import (
	"sync"
	"time"
)

// TokenBucket is upstream's per-key limiter (docs/protocol.md B.10): a key starts
// full with capacity tokens and refills refillPerMinute tokens per minute,
// fractionally, capped at capacity. It is per replica by design (B.14:
// limits multiply by the number of replicas; documented in docs/ha.md).
type TokenBucket struct {
	capacity        float64
	refillPerMinute float64

	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
}

type bucket struct {
	tokens     float64
	lastRefill time.Time
}

// New returns a limiter of capacity tokens refilled at
// refillPerMinute.
func New(capacity, refillPerMinute float64) *TokenBucket {
	return &TokenBucket{capacity: capacity, refillPerMinute: refillPerMinute, buckets: map[string]*bucket{}}
}

// Take consumes one token of key at now and reports whether one was there.
// A denied take keeps the bucket's state.
func (tb *TokenBucket) Take(key string, now time.Time) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	b, ok := tb.buckets[key]
	if !ok {
		b = &bucket{tokens: tb.capacity, lastRefill: now}
		tb.buckets[key] = b
	}
	if now.After(b.lastRefill) {
		elapsed := float64(now.Sub(b.lastRefill)) / float64(time.Millisecond)
		b.tokens += elapsed * tb.refillPerMinute / 60000
		if b.tokens > tb.capacity {
			b.tokens = tb.capacity
		}
		b.lastRefill = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Sweep forgets keys whose last refill is older than olderThan at now, so
// the map does not grow with every key ever seen.
func (tb *TokenBucket) Sweep(olderThan time.Duration, now time.Time) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for k, b := range tb.buckets {
		if now.Sub(b.lastRefill) > olderThan {
			delete(tb.buckets, k)
		}
	}
}

// Len returns the number of tracked keys.
func (tb *TokenBucket) Len() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return len(tb.buckets)
}
