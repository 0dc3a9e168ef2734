package audit

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// chainLoop moves outboxes into chains every Poll, and at once after this
// writer committed events, until ctx is done; a final pass runs once
// flushed is closed (Run's last outbox flush), bounded by finalTimeout.
// Any replica chains any mesh: a mesh whose lock another writer holds is
// skipped (that writer is chaining it).
func (w *Writer) chainLoop(ctx context.Context, flushed <-chan struct{}) {
	t := time.NewTicker(w.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-flushed
			final, cancel := context.WithTimeout(context.Background(), finalTimeout)
			defer cancel()
			w.chainOutbox(final)
			return
		case <-t.C:
		case <-w.chainNow:
		}
		w.chainOutbox(ctx)
	}
}

// chainOutbox chains every mesh that has outbox events.
func (w *Writer) chainOutbox(ctx context.Context) {
	meshes, err := w.cfg.Store.AuditOutboxMeshes(ctx, meshesPerScan)
	if err != nil {
		if ctx.Err() == nil {
			w.warn(err, "audit outbox scan failed")
		}
		return
	}
	for _, m := range meshes {
		w.chainMesh(ctx, m, false)
	}
}

// chainMesh moves meshID's outbox into its chain, batchMax events per
// transaction, until it is empty, the lock is busy (wait false) or a
// transaction fails (the events stay in the outbox for the next pass).
func (w *Writer) chainMesh(ctx context.Context, meshID string, wait bool) {
	for ctx.Err() == nil {
		start := time.Now()
		tctx, cancel := context.WithTimeout(ctx, writeTimeout)
		moved, busy, err := w.cfg.Store.ChainAuditOutbox(tctx, meshID, wait, batchMax)
		cancel()
		w.met.writeSeconds.Observe(time.Since(start).Seconds())
		w.met.events.Add(float64(moved))
		if err != nil && ctx.Err() == nil {
			w.warn(err, "audit chain append failed; events stay in the outbox")
		}
		if err != nil || busy || moved < batchMax {
			return
		}
	}
}

type metrics struct {
	events       prometheus.Counter
	dropped      *prometheus.CounterVec // reason
	writeSeconds prometheus.Histogram
}

// newMetrics registers the writer's series on reg; a series already there
// (two writers on one registry) is shared.
func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		events: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_audit_events_total", Help: "Audit events moved from the outbox into the chain by this replica."})),
		dropped: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_audit_dropped_total", Help: "Audit events that can never be written, by reason (invalid_payload, write_failed at shutdown)."},
			[]string{"reason"})),
		writeSeconds: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "broker_audit_write_seconds", Help: "Duration of one outbox-to-chain transaction (lock wait included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})),
	}
	for _, r := range []string{reasonBad, reasonFailed} {
		m.dropped.WithLabelValues(r)
	}
	return m
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
