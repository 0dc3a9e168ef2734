package broker

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// A lingering batcher holds its batch open for linger after the first item
// (or until it is full); one without linger runs whatever is queued at once.
func TestBatcherLinger(t *testing.T) {
	for _, tc := range []struct {
		name   string
		linger time.Duration
		max    int
		want   []int // batch sizes
	}{
		{"no_linger", 0, 10, []int{1, 1, 1}},
		{"linger", 10 * time.Millisecond, 10, []int{3}},
		{"full_before_linger", 10 * time.Millisecond, 2, []int{2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				var sizes []int
				var at []time.Duration
				start := time.Now()
				b := newBatcher(tc.max, func(_ context.Context, items []int) error {
					sizes = append(sizes, len(items))
					at = append(at, time.Since(start))
					return nil
				}, nil)
				b.linger = tc.linger
				go b.loop(ctx)
				for i := range 3 {
					b.post(ctx, i, nil)
					time.Sleep(2 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
				synctest.Wait()
				if !slices.Equal(sizes, tc.want) {
					t.Fatalf("batch sizes %v (at %v), want %v", sizes, at, tc.want)
				}
				if tc.name == "linger" && at[0] != tc.linger {
					t.Fatalf("lingering batch ran at %v, want %v", at[0], tc.linger)
				}
			})
		})
	}
}
