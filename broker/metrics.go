package broker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the upstream series of docs/protocol.md B.9.1 (exact names, types
// and labels) plus meshd's own; the leader jobs' series (queue depth, TTL
// sweeps) are package jobs'. They are registered on the registry passed to
// New; labels come only from closed enums.
type metrics struct {
	connectionsTotal    prometheus.Counter
	connectionsRejected *prometheus.CounterVec // reason
	connectionsActive   prometheus.Gauge
	messagesRouted      *prometheus.CounterVec // priority
	messagesRejected    *prometheus.CounterVec // reason
	droppedByGrant      *prometheus.CounterVec // cap
	dbHealthy           prometheus.Gauge

	pushDropped  *prometheus.CounterVec // reason
	redeliveries prometheus.Counter
	draining     prometheus.Gauge
	closes       *prometheus.CounterVec   // reason
	batchSize    *prometheus.HistogramVec // kind: enqueue, ack, delivered, claim
}

// Label values of meshd's own counters.
var (
	rejectReasons    = []string{"rate_limit", "too_large", "no_recipient", "parse_or_handler", "unavailable"}
	routedPriorities = []string{"now", "next", "low", "stream"}
	grantCaps        = []string{"dm", "broadcast"}
	pushDropReasons  = []string{"slow_consumer", "closed", "fanout_overflow", "mark_overflow"}
)

func newMetrics(reg prometheus.Registerer, closeReasons, helloReasons []string) *metrics {
	m := &metrics{
		connectionsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_connections_total", Help: "WebSocket connections accepted (before hello)."}),
		connectionsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_connections_rejected_total", Help: "hello/session_hello rejections by reason."}, []string{"reason"}),
		connectionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_connections_active", Help: "Live WebSocket connections on this replica."}),
		messagesRouted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_messages_routed_total", Help: "Messages pushed, per recipient, by priority."}, []string{"priority"}),
		messagesRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_messages_rejected_total", Help: "Rejected sends and failed frames by reason."}, []string{"reason"}),
		droppedByGrant: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_messages_dropped_by_grant_total", Help: "Messages blocked by recipient grants, by capability."}, []string{"cap"}),
		dbHealthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_db_healthy", Help: "1 when the last database ping succeeded."}),
		pushDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_push_dropped_total", Help: "Pushes not written to a socket, by reason (the row stays queued)."}, []string{"reason"}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_redrain_triggers_total", Help: "Drains started by the periodic re-drain rather than a wake-up."}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_draining", Help: "1 while this replica drains for shutdown."}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_connections_closed_total", Help: "Sockets closed by the broker, by close reason."}, []string{"reason"}),
	}
	reg.MustRegister(m.connectionsTotal, m.connectionsRejected, m.connectionsActive, m.messagesRouted,
		m.messagesRejected, m.droppedByGrant, m.dbHealthy, m.pushDropped,
		m.redeliveries, m.draining, m.closes)
	m.batchSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "meshd_batch_size", Help: "Rows per group-commit statement of the delivery road, by kind.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11)}, []string{"kind"})
	reg.MustRegister(m.batchSize)
	// Touch every label value so each series is exported from the start
	// (dashboards and alerts see 0, not "no data").
	for _, r := range helloReasons {
		m.connectionsRejected.WithLabelValues(r)
	}
	for _, r := range closeReasons {
		m.closes.WithLabelValues(r)
	}
	for _, r := range rejectReasons {
		m.messagesRejected.WithLabelValues(r)
	}
	for _, p := range routedPriorities {
		m.messagesRouted.WithLabelValues(p)
	}
	for _, c := range grantCaps {
		m.droppedByGrant.WithLabelValues(c)
	}
	for _, r := range pushDropReasons {
		m.pushDropped.WithLabelValues(r)
	}
	return m
}
