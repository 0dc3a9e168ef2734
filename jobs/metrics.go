package jobs

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the jobs' series (docs/operations.md); they are exported by
// every replica and move only on the one that leads the job.
type metrics struct {
	queueDepth     prometheus.Gauge
	queueOldestAge prometheus.Gauge
	ttlSweeps      *prometheus.CounterVec // flipped: a bounded bucket (flippedBucket)
	ttlFlipped     prometheus.Counter
}

// flippedBuckets are the values of broker_ttl_sweeps_total's flipped label
// (docs/protocol.md B.9.1 names the series; a raw count in a label would be
// unbounded, so counts are bucketed and the exact sum is
// broker_ttl_sweep_flipped_total).
var flippedBuckets = []string{"0", "1", "2-10", "11+"}

// flippedBucket is the flipped label of a sweep that flipped n rows.
func flippedBucket(n int64) string {
	switch {
	case n <= 1:
		return strconv.FormatInt(max(n, 0), 10)
	case n <= 10:
		return "2-10"
	}
	return "11+"
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_queue_depth", Help: "Undelivered queue rows (claimed rows included)."}),
		queueOldestAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_queue_oldest_age_seconds", Help: "Age of the oldest undelivered queue row."}),
		ttlSweeps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_ttl_sweeps_total",
			Help: "Status TTL sweeps, labelled by the number of rows flipped (0, 1, 2-10, 11+)."}, []string{"flipped"}),
		ttlFlipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_ttl_sweep_flipped_total", Help: "Presences flipped from working to idle by the status TTL sweep."}),
	}
	for _, c := range []prometheus.Collector{m.queueDepth, m.queueOldestAge, m.ttlSweeps, m.ttlFlipped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, b := range flippedBuckets {
		m.ttlSweeps.WithLabelValues(b)
	}
	return m, nil
}
