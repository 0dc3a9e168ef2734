package broker

// The audit chain (docs/protocol.md B.8): a per-replica asynchronous writer and
// the audit_query / audit_verify verbs.
//
// audit() never blocks its caller. It renders the payload canonical at once
// (so the queued event cannot change under a caller that reuses a slice)
// and appends it to one of auditShards bounded queues, chosen by mesh. Each
// shard's goroutine waits auditLinger after the first event (less when
// auditBatchMax are queued), groups what it took by mesh and writes each
// mesh's events, in arrival order, with one AppendAudit call: one advisory
// lock and one transaction per mesh batch instead of per event. The chain
// stays linear across replicas (the store re-reads the tail under the lock)
// and the write is off the per-message path: sends wait on neither.
//
// Overflow policy: a shard already holding auditQueueMax events drops the
// new one. Drops are counted by reason in broker_audit_dropped_total
// (queue_full, write_failed, invalid_payload, shutdown) and logged at most
// every auditDropLogEvery. A dropped event is missing from the chain, which
// still verifies: the chain proves that what it holds was not altered, not
// that every event was recorded.
//
// A failed write is logged ("audit log insert failed") and retried once
// after auditRetryDelay; then its events are dropped (write_failed).
// Payloads are canonicalized before queueing and every field was already
// accepted by the database in the handler's own write, so a failure means
// the database, not one event; a batch is retried whole.
//
// Lifetime: the writer starts on first use (the Server has no hook for it in
// Start); its goroutines join Server.loops so Shutdown waits for their last
// flush. A shard stops once melody is closed (Shutdown closes it after the
// sockets, before stopping the loops): it marks itself stopped, writes what
// it holds and exits; later events are dropped (reason shutdown).
//
// Lock order: auditShard.mu is a leaf, never held across I/O.

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd/wire"
)

const (
	auditShards = 4
	// auditQueueMax bounds one shard's queue: about two seconds of a
	// 2,000 events/s burst on one mesh while the database stalls. Beyond
	// it events are dropped instead of growing memory without bound.
	auditQueueMax = 4096
	// auditBatchMax caps one AppendAudit call so a transaction holds the
	// mesh's audit lock for a few milliseconds at most.
	auditBatchMax = 256
	// auditLinger is how long a shard collects after its first event: long
	// enough to batch a burst, short enough that audit_query lags little.
	auditLinger = 20 * time.Millisecond
	// auditWriteTimeout bounds one AppendAudit call (lock wait included).
	auditWriteTimeout = 5 * time.Second
	auditRetryDelay   = 100 * time.Millisecond
	// auditPoll is how often an idle shard checks for shutdown.
	auditPoll = 100 * time.Millisecond
	// auditSyncWait bounds how long audit_query/audit_verify wait for this
	// replica's queued events of the mesh to be written.
	auditSyncWait     = 2 * time.Second
	auditDropLogEvery = 10 * time.Second
	// auditQueryMaxLimit caps audit_query's page so one reply stays a
	// bounded frame (state_set payloads may carry values of up to 64 KiB).
	auditQueryMaxLimit = 500
	auditQueryDefault  = 50
)

var auditDropReasons = []string{"queue_full", "write_failed", "invalid_payload", "shutdown"}

type auditWriter struct {
	srv  *Server // immutable
	once sync.Once

	// Set by start, immutable after.
	log          zerolog.Logger
	events       prometheus.Counter
	dropped      *prometheus.CounterVec // reason
	writeSeconds prometheus.Histogram

	shards      [auditShards]auditShard
	lastDropLog atomic.Int64 // unix nanos of the last drop warning
}

type auditShard struct {
	mu      sync.Mutex
	queue   []auditItem // guarded by mu
	events  int         // non-barrier items in queue; guarded by mu
	stopped bool        // guarded by mu: no loop will take from queue again

	wake chan struct{} // cap 1: the queue became non-empty
	full chan struct{} // cap 1: write without lingering
}

// auditItem is one queued event, or a barrier (done != nil) closed once
// every event queued before it on the shard has been written.
type auditItem struct {
	meshID string
	ev     AuditEvent
	done   chan struct{}
}

// audit records one audit-chain event for meshID (B.8 "Events audited").
// It never blocks the caller and never fails it: see the overflow policy
// above. actorID "" records a null actor; actorName "" a NULL display name.
func (s *Server) audit(_ context.Context, meshID, event, actorID, actorName string, payload map[string]any) {
	w := s.auditWriter()
	canonical, err := wire.CanonicalJSON(payload)
	if err != nil {
		w.log.Error().Err(err).Str("mesh", meshID).Str("event", event).Msg("audit payload not canonicalizable")
		w.drop("invalid_payload", 1)
		return
	}
	ev := AuditEvent{EventType: event, ActorDisplayName: actorName, Payload: json.RawMessage(canonical)}
	if actorID != "" {
		ev.ActorMemberID = &actorID
	}
	w.enqueue(auditItem{meshID: meshID, ev: ev})
}

// auditWriter returns s's writer (started by Start; started here if an
// event comes first). After Shutdown its loops are gone and events are
// dropped with reason shutdown.
func (s *Server) auditWriter() *auditWriter {
	s.aw.once.Do(s.aw.start)
	return s.aw
}

func (w *auditWriter) start() {
	s := w.srv
	w.log = s.log.With().Str("component", "audit").Logger()
	w.registerMetrics(s.cfg.Registry)
	for i := range w.shards {
		w.shards[i].wake = make(chan struct{}, 1)
		w.shards[i].full = make(chan struct{}, 1)
	}
	if s.m.IsClosed() {
		for i := range w.shards {
			w.shards[i].stopped = true
		}
		return
	}
	// Shutdown's loops.Wait covers these, so the final flush happens.
	s.loops.Add(auditShards)
	for i := range w.shards {
		go func() {
			defer s.loops.Done()
			w.run(&w.shards[i])
		}()
	}
}

// registerMetrics registers the writer's series on reg; when a series is
// already there (two Servers on one registry) the existing one is shared.
func (w *auditWriter) registerMetrics(reg prometheus.Registerer) {
	w.events = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "broker_audit_events_total", Help: "Audit events written to the chain by this replica."}))
	w.dropped = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "broker_audit_dropped_total", Help: "Audit events not written, by reason."}, []string{"reason"}))
	w.writeSeconds = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "broker_audit_write_seconds", Help: "Duration of one audit batch write (lock wait included).",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}))
	for _, r := range auditDropReasons {
		w.dropped.WithLabelValues(r)
	}
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (w *auditWriter) shard(meshID string) *auditShard {
	h := fnv.New32a()
	_, _ = h.Write([]byte(meshID))
	return &w.shards[h.Sum32()%auditShards]
}

// enqueue queues it without blocking; false when it was dropped (events are
// counted, barriers are not).
func (w *auditWriter) enqueue(it auditItem) bool {
	sh := w.shard(it.meshID)
	barrier := it.done != nil
	reason := ""
	sh.mu.Lock()
	switch {
	case sh.stopped:
		reason = "shutdown"
	case !barrier && sh.events >= auditQueueMax:
		reason = "queue_full"
	default:
		sh.queue = append(sh.queue, it)
		if !barrier {
			sh.events++
		}
	}
	n := sh.events
	sh.mu.Unlock()
	if reason != "" {
		if !barrier {
			w.drop(reason, 1)
		}
		return false
	}
	signal(sh.wake)
	if barrier || n >= auditBatchMax {
		signal(sh.full)
	}
	return true
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (w *auditWriter) drop(reason string, n int) {
	w.dropped.WithLabelValues(reason).Add(float64(n))
	now := time.Now().UnixNano()
	last := w.lastDropLog.Load()
	if now-last >= int64(auditDropLogEvery) && w.lastDropLog.CompareAndSwap(last, now) {
		w.log.Warn().Str("reason", reason).Int("events", n).Msg("audit events dropped (see broker_audit_dropped_total)")
	}
}

// run is one shard's loop; it returns after its final flush at shutdown.
func (w *auditWriter) run(sh *auditShard) {
	poll := time.NewTicker(auditPoll)
	defer poll.Stop()
	for {
		select {
		case <-sh.wake:
			linger(sh)
		case <-poll.C:
		}
		closing := w.srv.m.IsClosed()
		w.flush(sh.take(closing))
		if closing {
			return
		}
	}
}

// linger waits auditLinger for more events, or until the shard is full.
func linger(sh *auditShard) {
	t := time.NewTimer(auditLinger)
	defer t.Stop()
	select {
	case <-t.C:
	case <-sh.full:
	}
}

// take empties the queue; with stop it also refuses later items.
func (sh *auditShard) take(stop bool) []auditItem {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	items := sh.queue
	sh.queue, sh.events = nil, 0
	if stop {
		sh.stopped = true
	}
	return items
}

// flush writes items grouped by mesh, in arrival order within a mesh, at
// most auditBatchMax per call, then releases the barriers.
func (w *auditWriter) flush(items []auditItem) {
	var (
		order    []string
		byMesh   = map[string][]AuditEvent{}
		barriers []chan struct{}
	)
	for _, it := range items {
		if it.done != nil {
			barriers = append(barriers, it.done)
			continue
		}
		if _, ok := byMesh[it.meshID]; !ok {
			order = append(order, it.meshID)
		}
		byMesh[it.meshID] = append(byMesh[it.meshID], it.ev)
	}
	for _, meshID := range order {
		evs := byMesh[meshID]
		for len(evs) > 0 {
			n := min(len(evs), auditBatchMax)
			w.write(meshID, evs[:n])
			evs = evs[n:]
		}
	}
	for _, d := range barriers {
		close(d)
	}
}

// write appends one batch, retrying once after auditRetryDelay.
func (w *auditWriter) write(meshID string, evs []AuditEvent) {
	err := w.append(meshID, evs)
	if err == nil {
		return
	}
	w.log.Warn().Err(err).Str("mesh", meshID).Int("events", len(evs)).Msg("audit log insert failed")
	time.Sleep(auditRetryDelay)
	if err = w.append(meshID, evs); err == nil {
		return
	}
	w.log.Error().Err(err).Str("mesh", meshID).Int("events", len(evs)).Msg("audit log insert failed (retried; events dropped)")
	w.drop("write_failed", len(evs))
}

func (w *auditWriter) append(meshID string, evs []AuditEvent) error {
	ctx, cancel := context.WithTimeout(context.Background(), auditWriteTimeout)
	defer cancel()
	start := time.Now()
	err := w.srv.cfg.Store.AppendAudit(ctx, meshID, evs)
	w.writeSeconds.Observe(time.Since(start).Seconds())
	if err == nil {
		w.events.Add(float64(len(evs)))
	}
	return err
}

// auditSync waits until the events this replica queued for meshID before
// the call are written (bounded by auditSyncWait and ctx), so a member's
// audit_query sees the sends it made just before on this socket. Events
// queued on other replicas are not waited for.
func (s *Server) auditSync(ctx context.Context, meshID string) {
	done := make(chan struct{})
	if !s.auditWriter().enqueue(auditItem{meshID: meshID, done: done}) {
		return
	}
	t := time.NewTimer(auditSyncWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
}

// auditEntryFrame is one entry of audit_result (B.8).
type auditEntryFrame struct {
	ID        int64           `json:"id"`
	EventType string          `json:"eventType"`
	Actor     string          `json:"actor"`
	Payload   json.RawMessage `json:"payload"`
	Hash      string          `json:"hash"`
	CreatedAt string          `json:"createdAt"`
}

// handleAuditQuery answers audit_query {limit?, offset?, eventType?} with
// audit_result, newest first (B.8). Any authenticated member of the mesh
// may ask. limit defaults to 50 and is clamped to [1, 500]; a negative or
// missing offset is 0; fractional numbers are truncated.
func (s *Server) handleAuditQuery(ctx context.Context, c *conn, data []byte, reqID string) error {
	var m struct {
		Limit     *float64 `json:"limit"`
		Offset    *float64 `json:"offset"`
		EventType string   `json:"eventType"`
	}
	if err := decode(data, &m, "audit_query"); err != nil {
		c.sendError("audit_query_error", err.Error(), reqID)
		return nil
	}
	limit, offset := auditPage(m.Limit, m.Offset)
	pres, _, _ := c.snapshot()
	s.auditSync(ctx, pres.MeshID)
	entries, total, err := s.cfg.Store.QueryAudit(ctx, pres.MeshID, limit, offset, m.EventType)
	if err != nil {
		c.logger().Warn().Err(err).Msg("audit query failed")
		c.sendError("audit_query_error", "audit query failed", reqID)
		return nil
	}
	out := make([]auditEntryFrame, 0, len(entries))
	for _, e := range entries {
		out = append(out, auditEntryFrame{ID: e.ID, EventType: e.EventType, Actor: auditActor(e),
			Payload: e.Payload, Hash: e.Hash, CreatedAt: wire.FormatISOTime(e.CreatedAt)})
	}
	c.send(withReq(map[string]any{"type": "audit_result", "entries": out, "total": total}, reqID))
	return nil
}

func auditPage(limit, offset *float64) (int, int) {
	l, o := auditQueryDefault, 0
	if limit != nil {
		l = int(min(max(*limit, 1), auditQueryMaxLimit))
	}
	if offset != nil && *offset > 0 {
		o = int(min(*offset, 1<<31-1))
	}
	return l, o
}

// auditActor is B.8's actor: display name ?? member id ?? "system".
func auditActor(e AuditEntry) string {
	switch {
	case e.ActorDisplayName != nil:
		return *e.ActorDisplayName
	case e.ActorMemberID != nil:
		return *e.ActorMemberID
	}
	return "system"
}

// handleAuditVerify answers audit_verify with audit_verify_result (B.8).
func (s *Server) handleAuditVerify(ctx context.Context, c *conn, _ []byte, reqID string) error {
	pres, _, _ := c.snapshot()
	s.auditSync(ctx, pres.MeshID)
	valid, entries, brokenAt, err := s.cfg.Store.VerifyAudit(ctx, pres.MeshID)
	if err != nil {
		c.logger().Warn().Err(err).Msg("audit verify failed")
		c.sendError("audit_verify_error", "audit verify failed", reqID)
		return nil
	}
	res := map[string]any{"type": "audit_verify_result", "valid": valid, "entries": entries}
	if brokenAt != nil {
		res["brokenAt"] = *brokenAt
	}
	c.send(withReq(res, reqID))
	return nil
}
