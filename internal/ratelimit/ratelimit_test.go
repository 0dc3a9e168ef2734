package ratelimit

import (
	"testing"
	"time"
)

// The six cases of upstream rate-limit.test.ts (docs/protocol.md B.17).
func TestTokenBucket(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)

	t.Run("capacity 5 allows 5 then denies", func(t *testing.T) {
		tb := New(5, 60)
		for i := 0; i < 5; i++ {
			if !tb.Take("k", t0) {
				t.Fatalf("take %d denied", i+1)
			}
		}
		if tb.Take("k", t0) {
			t.Fatal("6th take allowed")
		}
	})

	t.Run("30/30 denies the 31st at t0", func(t *testing.T) {
		tb := New(30, 30)
		for i := 0; i < 30; i++ {
			if !tb.Take("k", t0) {
				t.Fatalf("take %d denied", i+1)
			}
		}
		if tb.Take("k", t0) {
			t.Fatal("31st allowed")
		}
	})

	t.Run("refill 1/s", func(t *testing.T) {
		tb := New(5, 60)
		for i := 0; i < 5; i++ {
			tb.Take("k", t0)
		}
		if !tb.Take("k", t0.Add(time.Second)) {
			t.Fatal("+1s should give one token")
		}
		if tb.Take("k", t0.Add(time.Second)) {
			t.Fatal("only one token after +1s")
		}
		t3 := t0.Add(3 * time.Second)
		if !tb.Take("k", t3) || !tb.Take("k", t3) {
			t.Fatal("+3s should give 2 more tokens")
		}
		if tb.Take("k", t3) {
			t.Fatal("no third token at +3s")
		}
	})

	t.Run("no refill beyond capacity", func(t *testing.T) {
		tb := New(5, 60)
		tb.Take("k", t0)
		later := t0.Add(time.Hour)
		for i := 0; i < 5; i++ {
			if !tb.Take("k", later) {
				t.Fatalf("take %d denied", i+1)
			}
		}
		if tb.Take("k", later) {
			t.Fatal("bucket exceeded capacity")
		}
	})

	t.Run("keys independent", func(t *testing.T) {
		tb := New(1, 60)
		if !tb.Take("a", t0) || tb.Take("a", t0) {
			t.Fatal("key a")
		}
		if !tb.Take("b", t0) {
			t.Fatal("key b affected by a")
		}
	})

	t.Run("sweep", func(t *testing.T) {
		tb := New(5, 60)
		tb.Take("old", t0)
		tb.Take("new", t0.Add(100*time.Second))
		tb.Sweep(60*time.Second, t0.Add(90*time.Second))
		if tb.Len() != 1 {
			t.Fatalf("len %d, want 1", tb.Len())
		}
		if _, ok := tb.buckets["new"]; !ok {
			t.Fatal("sweep dropped the fresh key")
		}
	})
}

// A bounded bucket keeps at most maxKeys keys, forgets the least recently
// used one first and counts evictions.
func TestBoundedEvictsLeastRecentlyUsed(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tb := NewBounded(1, 1, 2)
	tb.Take("a", t0)
	tb.Take("b", t0)
	if tb.Take("a", t0) { // a is now the most recent, and empty
		t.Fatal("a had a second token")
	}
	tb.Take("c", t0) // evicts b
	if tb.Len() != 2 || tb.Evictions() != 1 {
		t.Fatalf("len %d evictions %d", tb.Len(), tb.Evictions())
	}
	if tb.Take("a", t0) {
		t.Fatal("a was evicted instead of b")
	}
	if !tb.Take("b", t0) { // b starts full again, evicting c
		t.Fatal("b not forgotten")
	}
	if tb.Evictions() != 2 || tb.Len() != 2 {
		t.Fatalf("len %d evictions %d", tb.Len(), tb.Evictions())
	}
}
