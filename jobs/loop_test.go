package jobs

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// The loops' timing is pure timer logic, checked on synctest's fake clock:
// no real sleeps, no flakes on a busy machine.

func TestEveryRunsAtOnceThenEachPeriodUntilCancelled(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		var at []time.Duration
		done := make(chan error)
		go func() {
			done <- every(ctx, 5*time.Second, func(context.Context) { at = append(at, time.Since(start)) })
		}()
		time.Sleep(12 * time.Second)
		synctest.Wait()
		if want := []time.Duration{0, 5 * time.Second, 10 * time.Second}; !slices.Equal(at, want) {
			t.Fatalf("passes at %v, want %v", at, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("every returned %v on cancel, want nil", err)
		}
	})
}

func TestPollWaitsWhatEachPassReturns(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		waits := []time.Duration{time.Second, 20 * time.Millisecond, 250 * time.Millisecond, time.Hour}
		var at []time.Duration
		done := make(chan error)
		go func() {
			done <- poll(ctx, func(context.Context) time.Duration {
				at = append(at, time.Since(start))
				return waits[len(at)-1]
			})
		}()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		want := []time.Duration{0, time.Second, 1020 * time.Millisecond, 1270 * time.Millisecond}
		if !slices.Equal(at, want) {
			t.Fatalf("passes at %v, want %v", at, want)
		}
		cancel() // in the middle of the hour-long wait: poll returns at once
		if err := <-done; err != nil {
			t.Fatalf("poll returned %v on cancel, want nil", err)
		}
		if since := time.Since(start); since != 2*time.Second {
			t.Fatalf("poll returned after %v, want at the cancel (2s)", since)
		}
	})
}

func TestFlippedBucketIsBounded(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{-1: "0", 0: "0", 1: "1", 2: "2-10", 10: "2-10", 11: "11+", 1 << 40: "11+"} {
		if got := flippedBucket(n); got != want {
			t.Errorf("flippedBucket(%d) = %q, want %q", n, got, want)
		}
	}
	for _, b := range flippedBuckets {
		if flippedBucket(map[string]int64{"0": 0, "1": 1, "2-10": 5, "11+": 50}[b]) != b {
			t.Errorf("bucket %q is not reachable", b)
		}
	}
}
