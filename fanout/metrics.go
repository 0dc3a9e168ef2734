package fanout

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are registered on the Registerer given to New; label values come
// only from kinds.
type metrics struct {
	published     *prometheus.CounterVec
	received      *prometheus.CounterVec
	publishErrors *prometheus.CounterVec
	subscriptions prometheus.Gauge
	slowConsumers prometheus.Counter
	connected     prometheus.GaugeFunc
}

func newMetrics(connected func() float64) *metrics {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_fanout_published_total",
			Help: "Messages published to NATS, by topic kind.",
		}, []string{"kind"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_fanout_received_total",
			Help: "Messages received from NATS (once per message, not per local callback), by topic kind.",
		}, []string{"kind"}),
		publishErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "broker_fanout_publish_errors_total",
			Help: "Publishes that failed (bad topic, closed connection, reconnect buffer full), by topic kind.",
		}, []string{"kind"}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "broker_fanout_subscriptions",
			Help: "NATS subscriptions held (one per topic with local interest or lingering).",
		}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "broker_fanout_slow_consumer_total",
			Help: "Times a topic subscription hit its pending limit and NATS dropped messages.",
		}),
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "broker_nats_connected",
			Help: "1 while the NATS connection is up, 0 while disconnected or closed.",
		}, connected),
	}
	for _, k := range kinds { // export zeros so rate() works from the start
		m.published.WithLabelValues(k)
		m.received.WithLabelValues(k)
		m.publishErrors.WithLabelValues(k)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.received, m.publishErrors, m.subscriptions, m.slowConsumers, m.connected}
}

// register registers every collector or none.
func (m *metrics) register(reg prometheus.Registerer) error {
	cs := m.collectors()
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("fanout: register metrics: %w", err)
		}
	}
	return nil
}
