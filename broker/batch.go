package broker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd"
)

// batcher is the group commit of the delivery road: requests from every
// connection of this replica queue here and one goroutine runs them as one
// statement per batch. Sends have no timer: while a batch is in flight the
// next one fills up, so a quiet replica pays no added delay and a busy one
// pays one round trip (one commit) per batch instead of one per message.
// Writes no one waits for may linger (see linger).
type batcher[T any] struct {
	in    chan batchReq[T] // bounded: a full queue makes submitters wait (backpressure)
	max   int              // largest batch
	run   func(ctx context.Context, items []T) error
	sizes func(n int) // observes batch sizes (metrics); may be nil
	// linger, when set, holds a batch open that long after its first item
	// (or until it is full): for writes nobody waits on (acks, delivered
	// marks), so a steady trickle shares statements too (docs/benchmarks.md).
	linger time.Duration
}

type batchReq[T any] struct {
	item  T
	done  chan error  // do: receives the batch's result
	after func(error) // post: called with the batch's result; may be nil
}

func newBatcher[T any](max int, run func(context.Context, []T) error, sizes func(int)) *batcher[T] {
	return &batcher[T]{in: make(chan batchReq[T], 4*max), max: max, run: run, sizes: sizes}
}

// do submits item and waits until its batch committed or failed.
func (b *batcher[T]) do(ctx context.Context, item T) error {
	done := make(chan error, 1)
	select {
	case b.in <- batchReq[T]{item: item, done: done}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// The batch may still commit; the caller reports a failure and the
		// client retries (a duplicate is possible, never a loss).
		return context.Cause(ctx)
	}
}

// post submits item without waiting; after (if not nil) is called with
// the batch's result, or with ctx's cause when it could not be queued.
func (b *batcher[T]) post(ctx context.Context, item T, after func(error)) {
	select {
	case b.in <- batchReq[T]{item: item, after: after}:
	case <-ctx.Done():
		if after != nil {
			after(context.Cause(ctx))
		}
	}
}

// loop runs batches until ctx is done, then fails what is still queued.
func (b *batcher[T]) loop(ctx context.Context) {
	reqs := make([]batchReq[T], 0, b.max)
	items := make([]T, 0, b.max)
	for {
		select {
		case <-ctx.Done():
			b.failQueued(context.Cause(ctx))
			return
		case r := <-b.in:
			reqs = append(reqs[:0], r)
		}
		var (
			until <-chan time.Time
			timer *time.Timer
		)
		if b.linger > 0 {
			timer = time.NewTimer(b.linger)
			until = timer.C
		}
	fill:
		for len(reqs) < b.max {
			if until == nil {
				select {
				case r := <-b.in:
					reqs = append(reqs, r)
				default:
					break fill
				}
				continue
			}
			select {
			case r := <-b.in:
				reqs = append(reqs, r)
			case <-until:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		if timer != nil {
			timer.Stop()
		}
		items = items[:0]
		for _, r := range reqs {
			items = append(items, r.item)
		}
		if b.sizes != nil {
			b.sizes(len(items))
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
		err := b.run(rctx, items)
		cancel()
		for _, r := range reqs {
			r.finish(err)
		}
	}
}

func (r batchReq[T]) finish(err error) {
	if r.done != nil {
		r.done <- err
	}
	if r.after != nil {
		r.after(err)
	}
}

// batchTimeout bounds one batch's statement so a stalled database fails
// the waiting sends (each gets its own ack queued:false) instead of
// holding them past the handler timeout.
const batchTimeout = 10 * time.Second

func (b *batcher[T]) failQueued(err error) {
	for {
		select {
		case r := <-b.in:
			r.finish(err)
		default:
			return
		}
	}
}

// idClock hands out queue row ids (meshd.NewID's shape: 16 hex digits of
// Unix nanoseconds, then 16 random hex digits) whose time part strictly
// increases, so rows of one batch sort in submission order.
type idClock struct{ last atomic.Int64 }

func (c *idClock) next() string {
	for {
		last := c.last.Load()
		n := max(time.Now().UnixNano(), last+1)
		if c.last.CompareAndSwap(last, n) {
			return fmt.Sprintf("%016x%s", uint64(n), meshd.NewID()[16:])
		}
	}
}

// runner runs a function on a goroutine of its own only while there is
// work: kick starts it when idle, or asks a running one to go once more;
// it exits when a run finds nothing new. A socket thus holds no goroutine
// of ours while it is idle (melody's read and write pumps are its only
// two), and close waits for the one in flight.
type runner struct {
	mu      sync.Mutex
	running bool
	again   bool
	stopped bool
	idle    chan struct{} // closed when a stopped runner's last run ends
}

// kick runs fn now (on a new goroutine) or after the current run.
func (r *runner) kick(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stopped:
	case r.running:
		r.again = true
	default:
		r.running = true
		go r.loop(fn)
	}
}

func (r *runner) loop(fn func()) {
	for {
		fn()
		r.mu.Lock()
		if r.again && !r.stopped {
			r.again = false
			r.mu.Unlock()
			continue
		}
		r.running = false
		if r.idle != nil {
			close(r.idle)
			r.idle = nil
		}
		r.mu.Unlock()
		return
	}
}

// stop refuses further kicks and waits for the run in flight.
func (r *runner) stop() {
	r.mu.Lock()
	r.stopped = true
	if !r.running {
		r.mu.Unlock()
		return
	}
	idle := make(chan struct{})
	r.idle = idle
	r.mu.Unlock()
	<-idle
}
