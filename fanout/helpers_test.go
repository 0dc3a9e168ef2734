package fanout

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fanoutAPI mirrors broker.Fanout; the real compile-time check
// (var _ broker.Fanout = (*fanout.Bus)(nil)) lives in cmd/meshd, because
// fanout must not import broker.
type fanoutAPI interface {
	Publish(ctx context.Context, topic string, data []byte) error
	Subscribe(topic string, deliver func(data []byte)) (release func(), err error)
}

var _ fanoutAPI = (*Bus)(nil)

const waitLimit = 10 * time.Second

func startServer(t testing.TB, port int) *EmbeddedServer {
	t.Helper()
	s, err := StartEmbedded(EmbeddedConfig{Port: port})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func serverPort(t *testing.T, s *EmbeddedServer) int {
	t.Helper()
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newBus connects a Bus (one "replica") with test-sized timings; cleanup
// checks consistency, closes it and checks again.
func newBus(t testing.TB, natsURL, prefix string, tweak ...func(*Config)) *Bus {
	t.Helper()
	cfg := Config{
		URL:           natsURL,
		Prefix:        prefix,
		Name:          t.Name(),
		Linger:        100 * time.Millisecond,
		ReconnectWait: 50 * time.Millisecond,
		Registerer:    prometheus.NewRegistry(),
	}
	for _, f := range tweak {
		f(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := b.ConsistencyCheck(); err != nil {
			t.Errorf("ConsistencyCheck before close: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := b.ConsistencyCheck(); err != nil {
			t.Errorf("ConsistencyCheck after close: %v", err)
		}
	})
	return b
}

// inbox collects delivered messages without blocking the NATS goroutine.
type inbox chan string

func newInbox() inbox { return make(inbox, 1024) }

func (c inbox) deliver(data []byte) {
	select {
	case c <- string(data):
	default:
		panic("test inbox full")
	}
}

func (c inbox) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-c:
		return m
	case <-time.After(waitLimit):
		t.Fatal("timed out waiting for a message")
		return ""
	}
}

func (c inbox) empty(t *testing.T) {
	t.Helper()
	select {
	case m := <-c:
		t.Fatalf("unexpected message %q", m)
	default:
	}
}

func subscribe(t *testing.T, b *Bus, topic string, deliver func([]byte)) func() {
	t.Helper()
	release, err := b.Subscribe(topic, deliver)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", topic, err)
	}
	return release
}

func publish(t *testing.T, b *Bus, topic, data string) {
	t.Helper()
	if err := b.Publish(context.Background(), topic, []byte(data)); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

// flush waits until the server has processed everything b sent so far
// (subscriptions included).
func flush(t *testing.T, bs ...*Bus) {
	t.Helper()
	for _, b := range bs {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		err := b.Ping(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Ping: %v", err)
		}
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func gauge(b *Bus) float64 { return value(b.m.subscriptions) }

// value reads the single metric of c (testutil.ToFloat64 without its
// dependencies, which go.mod does not carry).
func value(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	close(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func subscriptionsHeld(b *Bus) int { return b.nc.NumSubscriptions() }

func isBadTopic(err error) bool { return errors.Is(err, ErrBadTopic) }
