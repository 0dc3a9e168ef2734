// Package ratelimit owns the per-key token buckets of docs/protocol.md B.10
// (per-member sends, hooks): in-memory, per replica, no I/O.
package ratelimit

import (
	"container/list"
	"sync"
	"time"
)

// TokenBucket is upstream's per-key limiter (docs/protocol.md B.10): a key starts
// full with capacity tokens and refills refillPerMinute tokens per minute,
// fractionally, capped at capacity. It is per replica by design (B.14:
// limits multiply by the number of replicas; documented in docs/ha.md).
// A bounded bucket (NewBounded) tracks at most maxKeys keys and forgets the
// least recently used one to make room, so a flood of distinct keys costs
// bounded memory (a forgotten key starts full again: an attacker who can
// cycle more than maxKeys keys gains at most one bucket's capacity each).
type TokenBucket struct {
	capacity        float64
	refillPerMinute float64
	maxKeys         int // 0: unbounded

	mu        sync.Mutex               // guards buckets, lru, evictions
	buckets   map[string]*list.Element // of *bucket
	lru       *list.List               // front: most recently taken
	evictions uint64
}

type bucket struct {
	key        string
	tokens     float64
	lastRefill time.Time
}

// New returns a limiter of capacity tokens refilled at
// refillPerMinute.
func New(capacity, refillPerMinute float64) *TokenBucket {
	return NewBounded(capacity, refillPerMinute, 0)
}

// NewBounded is New with at most maxKeys tracked keys (0: no bound).
func NewBounded(capacity, refillPerMinute float64, maxKeys int) *TokenBucket {
	return &TokenBucket{capacity: capacity, refillPerMinute: refillPerMinute, maxKeys: maxKeys,
		buckets: map[string]*list.Element{}, lru: list.New()}
}

// Take consumes one token of key at now and reports whether one was there.
// A denied take keeps the bucket's state.
func (tb *TokenBucket) Take(key string, now time.Time) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	el, ok := tb.buckets[key]
	if ok {
		tb.lru.MoveToFront(el)
	} else {
		if tb.maxKeys > 0 && len(tb.buckets) >= tb.maxKeys {
			old := tb.lru.Back()
			tb.lru.Remove(old)
			delete(tb.buckets, old.Value.(*bucket).key)
			tb.evictions++
		}
		el = tb.lru.PushFront(&bucket{key: key, tokens: tb.capacity, lastRefill: now})
		tb.buckets[key] = el
	}
	b := el.Value.(*bucket)
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
	for k, el := range tb.buckets {
		if now.Sub(el.Value.(*bucket).lastRefill) > olderThan {
			tb.lru.Remove(el)
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

// Evictions returns how many keys a bounded bucket forgot to make room.
func (tb *TokenBucket) Evictions() uint64 {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.evictions
}
