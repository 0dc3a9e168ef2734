// Package audit owns the writer of the per-mesh audit hash chains
// (docs/protocol.md B.8 "Write path"): it commits recorded events to the
// audit outbox — batched, retried until written, never dropped — and moves
// every mesh's outbox into its chain under the mesh's advisory lock, on
// whichever replica gets there first. A send's message_sent does not pass
// through here: the store commits it to the outbox with the queue row.
//
// Record batches across callers (a group commit: while one INSERT is in
// flight the next batch fills) and returns once its event is durable, so
// a socket's events reach the outbox in the order it caused them. Memory is
// bounded: at queueMax queued events Record waits for the writer to take a
// batch (that is, while the database refuses writes, callers block rather
// than events being lost). broker_audit_dropped_total counts only what can
// never be written: a payload that cannot be canonicalized or that the
// database refuses (invalid_payload), and events still unwritten when the
// writer stopped and its final attempt failed (write_failed).
//
// Lock order: Writer.mu is a leaf, never held across I/O.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Store is what the writer asks of the database.
type Store interface {
	// InsertAuditOutbox commits events to the outbox in one statement, in
	// order; meshd.ErrInvalidData when the database refuses a value.
	InsertAuditOutbox(ctx context.Context, events []meshd.MeshAuditEvent) error
	// AuditOutboxMeshes lists up to limit meshes with outbox events.
	AuditOutboxMeshes(ctx context.Context, limit int) ([]string, error)
	// ChainAuditOutbox moves up to max of meshID's outbox events into its
	// chain in one transaction under the mesh's audit lock; without wait
	// it returns busy when another writer holds the lock.
	ChainAuditOutbox(ctx context.Context, meshID string, wait bool, max int) (moved int, busy bool, err error)
}

// Config configures a Writer. Zero values take the defaults.
type Config struct {
	Store    Store                 // required
	Registry prometheus.Registerer // required: broker_audit_* series
	// Logger is the caller's logger (with "node"); the writer adds
	// "component":"audit".
	Logger zerolog.Logger
	// Poll is how often the outbox is scanned for meshes to chain (events
	// of sends, and of replicas that died); default 250ms.
	Poll time.Duration
}

const (
	// queueMax bounds the events waiting for the outbox.
	queueMax = 8192
	// batchMax caps one outbox INSERT and one chain transaction, so a
	// transaction holds a mesh's lock for a few milliseconds at most.
	batchMax = 256
	// meshesPerScan caps the meshes one outbox scan chains.
	meshesPerScan = 1000
	// writeTimeout bounds one statement or transaction (lock wait included).
	writeTimeout = 5 * time.Second
	// finalTimeout bounds the last flush after Run's context ended.
	finalTimeout = 5 * time.Second
	// syncWait bounds Sync.
	syncWait     = 2 * time.Second
	retryMin     = 50 * time.Millisecond
	retryMax     = 2 * time.Second
	warnEvery    = 10 * time.Second
	defaultPoll  = 250 * time.Millisecond
	reasonFailed = "write_failed"
	reasonBad    = "invalid_payload"
)

// Writer is one replica's audit writer. Create it with New, run Run for
// the server's lifetime; Record and Sync are safe for concurrent use.
type Writer struct {
	cfg Config
	log zerolog.Logger
	met metrics

	mu      sync.Mutex
	space   *sync.Cond // broadcast when the queue shrinks or the writer stops
	queue   []item     // guarded by mu
	events  int        // non-barrier items in queue; guarded by mu
	stopped bool       // guarded by mu: Run has ended; Record writes directly

	wake     chan struct{} // cap 1: the queue became non-empty
	chainNow chan struct{} // cap 1: the outbox got rows; scan it now
	lastWarn atomic.Int64  // unix nanos of the last rate-limited warning
}

// item is one event waiting for the outbox, or a barrier (zero event)
// whose done closes once every item queued before it is written.
type item struct {
	ev   meshd.MeshAuditEvent
	done chan struct{}
}

func (it item) barrier() bool { return it.ev.EventType == "" }

// New returns a Writer; nothing runs until Run.
func New(cfg Config) (*Writer, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("audit: Store required")
	case cfg.Registry == nil:
		return nil, errors.New("audit: Registry required")
	}
	if cfg.Poll <= 0 {
		cfg.Poll = defaultPoll
	}
	w := &Writer{
		cfg: cfg, log: cfg.Logger.With().Str("component", "audit").Logger(),
		met:  newMetrics(cfg.Registry),
		wake: make(chan struct{}, 1), chainNow: make(chan struct{}, 1),
	}
	w.space = sync.NewCond(&w.mu)
	return w, nil
}

// Record commits ev to meshID's audit outbox and returns once it is
// durable there, or when ctx ends (the writer still writes it). actor ""
// is recorded as given (ev.ActorMemberID nil hashes as "null").
func (w *Writer) Record(ctx context.Context, meshID string, ev meshd.AuditEvent) {
	c, err := wire.CanonicalJSON(ev.Payload)
	if err != nil {
		w.log.Error().Err(err).Str("mesh", meshID).Str("event", ev.EventType).Msg("audit payload not canonicalizable")
		w.met.dropped.WithLabelValues(reasonBad).Inc()
		return
	}
	ev.Payload = json.RawMessage(c)
	it := item{ev: meshd.MeshAuditEvent{MeshID: meshID, AuditEvent: ev}, done: make(chan struct{})}
	if !w.enqueue(it) {
		w.direct(it.ev)
		return
	}
	select {
	case <-it.done:
	case <-ctx.Done():
	}
}

// Sync waits (bounded by ctx and syncWait) until the events recorded on
// this replica before the call are in the outbox, then moves meshID's
// outbox into its chain, so a member's audit_query sees what it just did —
// its sends included, as the store committed their events with them.
func (w *Writer) Sync(ctx context.Context, meshID string) {
	ctx, cancel := context.WithTimeout(ctx, syncWait)
	defer cancel()
	done := make(chan struct{})
	if w.enqueue(item{done: done}) {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
	w.chainMesh(ctx, meshID, true)
}

// enqueue queues it, waiting while queueMax events are queued; false when
// the writer has stopped.
func (w *Writer) enqueue(it item) bool {
	w.mu.Lock()
	for !w.stopped && !it.barrier() && w.events >= queueMax {
		w.space.Wait()
	}
	if w.stopped {
		w.mu.Unlock()
		return false
	}
	w.queue = append(w.queue, it)
	if !it.barrier() {
		w.events++
	}
	w.mu.Unlock()
	signal(w.wake)
	return true
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// take removes up to batchMax events (and the barriers among them) from
// the head of the queue.
func (w *Writer) take() []item {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, evs := 0, 0
	for ; n < len(w.queue) && evs < batchMax; n++ {
		if !w.queue[n].barrier() {
			evs++
		}
	}
	items := append([]item(nil), w.queue[:n]...)
	w.queue = w.queue[n:]
	w.events -= evs
	if len(w.queue) > 0 {
		signal(w.wake)
	}
	w.space.Broadcast()
	return items
}

// Run commits recorded events to the outbox and chains outboxes until ctx
// is done; then it writes what is still queued (bounded by finalTimeout),
// makes later Records write directly, and returns. The error reports
// events it could not write at the end (counted as write_failed).
func (w *Writer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	flushed := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.chainLoop(ctx, flushed)
	}()
	var pending []item
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-w.wake:
			pending = w.commit(ctx, w.take())
		}
	}
	err := w.finish(pending)
	close(flushed)
	wg.Wait()
	return err
}

// finish is Run's last flush: pending (a batch interrupted by the end of
// Run) and the queue, then the writer stops taking events.
func (w *Writer) finish(pending []item) error {
	ctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
	defer cancel()
	w.mu.Lock()
	w.stopped = true
	items := append(pending, w.queue...)
	w.queue, w.events = nil, 0
	w.space.Broadcast()
	w.mu.Unlock()
	left := w.commit(ctx, items)
	for _, it := range left {
		close(it.done)
	}
	if n := countEvents(left); n > 0 {
		w.met.dropped.WithLabelValues(reasonFailed).Add(float64(n))
		w.log.Error().Int("events", n).Msg("audit events not written at shutdown")
		return fmt.Errorf("audit: %d events not written at shutdown", n)
	}
	return nil
}

func countEvents(items []item) int {
	n := 0
	for _, it := range items {
		if !it.barrier() {
			n++
		}
	}
	return n
}

// direct writes one event after Run ended (a late caller), retrying until
// finalTimeout.
func (w *Writer) direct(ev meshd.MeshAuditEvent) {
	ctx, cancel := context.WithTimeout(context.Background(), finalTimeout)
	defer cancel()
	if left := w.commit(ctx, []item{{ev: ev, done: make(chan struct{})}}); len(left) > 0 {
		w.met.dropped.WithLabelValues(reasonFailed).Inc()
		w.log.Error().Str("mesh", ev.MeshID).Str("event", ev.EventType).Msg("audit event not written after shutdown")
	}
}

// commit writes items' events to the outbox, retrying with backoff until
// written or ctx ends; it releases the written items (and the barriers
// among them) and returns the rest, in order.
func (w *Writer) commit(ctx context.Context, items []item) []item {
	for attempt := 0; len(items) > 0; attempt++ {
		n, err := w.write(ctx, items)
		release(items[:n])
		items = items[n:]
		if err == nil {
			signal(w.chainNow)
			return nil
		}
		w.warn(err, "audit outbox insert failed; retrying")
		if !sleep(ctx, backoff(attempt)) {
			return items
		}
	}
	return nil
}

func release(items []item) {
	for _, it := range items {
		close(it.done)
	}
}

// write inserts items' events in one statement and returns how many items
// are done. When the database refuses a value, the events are written one
// by one and those it refuses are dropped (invalid_payload).
func (w *Writer) write(ctx context.Context, items []item) (int, error) {
	switch err := w.insert(ctx, items); {
	case err == nil:
		return len(items), nil
	case !errors.Is(err, meshd.ErrInvalidData):
		return 0, err
	}
	for i, it := range items {
		err := w.insert(ctx, items[i:i+1])
		if errors.Is(err, meshd.ErrInvalidData) {
			w.log.Error().Err(err).Str("mesh", it.ev.MeshID).Str("event", it.ev.EventType).Msg("audit event refused by the database; dropped")
			w.met.dropped.WithLabelValues(reasonBad).Inc()
		} else if err != nil {
			return i, err
		}
	}
	return len(items), nil
}

func (w *Writer) insert(ctx context.Context, items []item) error {
	evs := make([]meshd.MeshAuditEvent, 0, len(items))
	for _, it := range items {
		if !it.barrier() {
			evs = append(evs, it.ev)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return w.cfg.Store.InsertAuditOutbox(ctx, evs)
}

func backoff(attempt int) time.Duration {
	return min(retryMin<<min(attempt, 10), retryMax)
}

// sleep waits d; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// warn logs a recurring failure at most every warnEvery.
func (w *Writer) warn(err error, msg string) {
	now := time.Now().UnixNano()
	last := w.lastWarn.Load()
	if now-last >= int64(warnEvery) && w.lastWarn.CompareAndSwap(last, now) {
		w.log.Warn().Err(err).Msg(msg)
	}
}
