package fanout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

func TestPublishReachesEveryReplica(t *testing.T) {
	s := startServer(t, -1)
	a := newBus(t, s.ClientURL(), "rep")
	b := newBus(t, s.ClientURL(), "rep")
	onA, onB := newInbox(), newInbox()
	subscribe(t, a, "mesh.m1", onA.deliver)
	subscribe(t, b, "mesh.m1", onB.deliver)

	raw, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	onRaw, err := raw.SubscribeSync("rep.mesh.m1")
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	flush(t, a, b)

	publish(t, a, "mesh.m1", "from-a")
	if got := onA.next(t); got != "from-a" {
		t.Errorf("A's own subscriber got %q", got)
	}
	if got := onB.next(t); got != "from-a" {
		t.Errorf("B's subscriber got %q", got)
	}
	msg, err := onRaw.NextMsg(waitLimit)
	if err != nil || string(msg.Data) != "from-a" {
		t.Errorf("subject rep.mesh.m1: got %v, %v", msg, err)
	}

	publish(t, b, "mesh.m1", "from-b")
	if got := onA.next(t); got != "from-b" {
		t.Errorf("A got %q", got)
	}
	if got := onB.next(t); got != "from-b" {
		t.Errorf("B got %q", got)
	}

	publish(t, a, "mesh.other", "nobody")
	flush(t, a, b)
	publish(t, a, "mesh.m1", "marker")
	if got := onB.next(t); got != "marker" {
		t.Errorf("B got %q from an unsubscribed topic", got)
	}
}

func TestPrefixIsolation(t *testing.T) {
	s := startServer(t, -1)
	t1 := newBus(t, s.ClientURL(), "t1")
	t2 := newBus(t, s.ClientURL(), "t2")
	on1, on2 := newInbox(), newInbox()
	subscribe(t, t1, "mesh.x", on1.deliver)
	subscribe(t, t2, "mesh.x", on2.deliver)
	flush(t, t1, t2)

	// t1's message is routed (or not) before t1's flush returns, so it would
	// reach t2 before t2's own marker.
	publish(t, t1, "mesh.x", "t1")
	flush(t, t1)
	publish(t, t2, "mesh.x", "t2")
	if got := on2.next(t); got != "t2" {
		t.Fatalf("prefix t2 saw %q first", got)
	}
	if got := on1.next(t); got != "t1" {
		t.Fatalf("prefix t1 saw %q", got)
	}
	flush(t, t1, t2)
	on1.empty(t)
	on2.empty(t)
}

func TestRefcountedInterest(t *testing.T) {
	s := startServer(t, -1)
	b := newBus(t, s.ClientURL(), "ref")
	first, second := newInbox(), newInbox()
	r1 := subscribe(t, b, "peer.m.k1", first.deliver)
	r2 := subscribe(t, b, "peer.m.k1", second.deliver)
	if g, n := gauge(b), subscriptionsHeld(b); g != 1 || n != 1 {
		t.Fatalf("two subscribes: gauge %v, nats subscriptions %d; want 1, 1", g, n)
	}
	if err := b.ConsistencyCheck(); err != nil {
		t.Fatal(err)
	}

	r1()
	r1() // idempotent: must not drop the second callback
	flush(t, b)
	publish(t, b, "peer.m.k1", "after-r1")
	if got := second.next(t); got != "after-r1" {
		t.Fatalf("remaining subscriber got %q", got)
	}
	first.empty(t)
	if err := b.ConsistencyCheck(); err != nil {
		t.Fatal(err)
	}

	r2()
	if g := gauge(b); g != 1 {
		t.Fatalf("gauge right after last release = %v, want 1 (linger)", g)
	}
	if err := b.ConsistencyCheck(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lingering subscription is dropped", func() bool { return gauge(b) == 0 })
	if n := subscriptionsHeld(b); n != 0 {
		t.Fatalf("nats subscriptions after linger = %d, want 0", n)
	}
	if err := b.ConsistencyCheck(); err != nil {
		t.Fatal(err)
	}
	r2()
	if g := gauge(b); g != 0 {
		t.Fatalf("a second release changed the gauge to %v", g)
	}
}

func TestResubscribeWithinLingerReusesSubscription(t *testing.T) {
	const linger = 300 * time.Millisecond
	s := startServer(t, -1)
	b := newBus(t, s.ClientURL(), "linger", func(c *Config) { c.Linger = linger })
	natsSub := func() *nats.Subscription {
		b.mu.Lock()
		defer b.mu.Unlock()
		if in := b.topics["presence.p1"]; in != nil {
			return in.sub
		}
		return nil
	}

	subscribe(t, b, "presence.p1", func([]byte) {})()
	before := natsSub()
	in := newInbox()
	subscribe(t, b, "presence.p1", in.deliver)
	if after := natsSub(); before == nil || after != before {
		t.Fatalf("resubscribe within linger: subscription %p, want the lingering %p", after, before)
	}
	time.Sleep(2 * linger) // the cancelled timer must not fire later
	if g, n := gauge(b), subscriptionsHeld(b); g != 1 || n != 1 {
		t.Fatalf("after linger with interest back: gauge %v, nats subscriptions %d; want 1, 1", g, n)
	}
	publish(t, b, "presence.p1", "still-here")
	if got := in.next(t); got != "still-here" {
		t.Fatalf("got %q", got)
	}
}

func TestBadTopicsRejected(t *testing.T) {
	s := startServer(t, -1)
	b := newBus(t, s.ClientURL(), "bad")
	for _, topic := range []string{
		"", " ", "mesh. x", "mesh.x ", "mesh\tx", "mesh\nx", "mesh\x00x",
		"mesh.*", "*", "mesh.>", ">", "peer.*.k",
		"mesh..x", ".mesh", "mesh.", ".",
		string(make([]byte, maxTopicLen+1)),
	} {
		t.Run(fmt.Sprintf("%q", topic), func(t *testing.T) {
			if _, err := b.Subscribe(topic, func([]byte) {}); !isBadTopic(err) {
				t.Errorf("Subscribe: err = %v, want ErrBadTopic", err)
			}
			if err := b.Publish(context.Background(), topic, nil); !isBadTopic(err) {
				t.Errorf("Publish: err = %v, want ErrBadTopic", err)
			}
		})
	}
	if g := gauge(b); g != 0 {
		t.Fatalf("rejected subscribes left gauge at %v", g)
	}
	if got := value(b.m.publishErrors.WithLabelValues(kindMesh)); got != 6 {
		t.Errorf("publish errors{kind=mesh} = %v, want 6 (one per rejected \"mesh.…\" topic)", got)
	}
	// The bus still works after the rejections.
	in := newInbox()
	subscribe(t, b, "mesh.ok", in.deliver)
	publish(t, b, "mesh.ok", "ok")
	if got := in.next(t); got != "ok" {
		t.Fatalf("got %q", got)
	}
	if _, err := b.Subscribe("mesh.ok", nil); err == nil {
		t.Error("nil callback accepted")
	}
}

func TestConfigRejected(t *testing.T) {
	reg := prometheus.NewRegistry()
	for name, cfg := range map[string]Config{
		"missing URL":        {Registerer: reg},
		"missing Registerer": {URL: "nats://127.0.0.1:1"},
		"wildcard prefix":    {URL: "nats://127.0.0.1:1", Registerer: reg, Prefix: "meshd.*"},
		"empty prefix token": {URL: "nats://127.0.0.1:1", Registerer: reg, Prefix: "meshd."},
		"negative linger":    {URL: "nats://127.0.0.1:1", Registerer: reg, Linger: -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			if b, err := New(context.Background(), cfg); err == nil {
				b.Close()
				t.Fatal("New accepted the config")
			}
		})
	}
	t.Run("unreachable server", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if b, err := New(ctx, Config{URL: "nats://127.0.0.1:1", Registerer: reg}); err == nil {
			b.Close()
			t.Fatal("New connected to nothing")
		}
	})
}

func TestMetricsMove(t *testing.T) {
	s := startServer(t, -1)
	reg := prometheus.NewRegistry()
	b := newBus(t, s.ClientURL(), "met", func(c *Config) { c.Registerer = reg })
	if got := value(b.m.connected); got != 1 {
		t.Errorf("broker_nats_connected = %v, want 1", got)
	}
	in := newInbox()
	subscribe(t, b, "stream.s1", in.deliver)
	subscribe(t, b, "stream.s1", in.deliver)
	publish(t, b, "stream.s1", "x")
	in.next(t)
	in.next(t)
	publish(t, b, "weird.thing", "y")

	want := map[string]float64{
		`broker_fanout_published_total{kind="stream"}`: 1,
		`broker_fanout_published_total{kind="other"}`:  1,
		`broker_fanout_received_total{kind="stream"}`:  1, // once per message, not per callback
		`broker_fanout_subscriptions`:                  1,
	}
	for name, v := range want {
		if got := metricValue(t, reg, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	// Registering twice on one registry is a configuration error.
	if _, err := New(context.Background(), Config{URL: s.ClientURL(), Registerer: reg}); err == nil {
		t.Error("second Bus on the same registry accepted")
	}
}

func TestSlowConsumerCountedAndIsolated(t *testing.T) {
	s := startServer(t, -1)
	b := newBus(t, s.ClientURL(), "slow", func(c *Config) { c.PendingMsgs = 4 })
	unblock := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(unblock) })
	subscribe(t, b, "mesh.slow", func([]byte) { <-unblock })
	fast := newInbox()
	subscribe(t, b, "mesh.fast", fast.deliver)
	flush(t, b)
	for i := range 100 {
		publish(t, b, "mesh.slow", fmt.Sprint(i))
	}
	eventually(t, "a slow consumer is counted", func() bool { return value(b.m.slowConsumers) >= 1 })
	// Another topic keeps flowing while one is stuck.
	publish(t, b, "mesh.fast", "fast")
	if got := fast.next(t); got != "fast" {
		t.Fatalf("got %q", got)
	}
	once.Do(func() { close(unblock) })
}

func TestReconnectResubscribes(t *testing.T) {
	s := startServer(t, -1)
	port := serverPort(t, s)
	a := newBus(t, s.ClientURL(), "rc")
	b := newBus(t, s.ClientURL(), "rc")
	in := newInbox()
	subscribe(t, b, "peer.m.k", in.deliver)
	flush(t, b)

	s.Shutdown()
	eventually(t, "both buses see the disconnect", func() bool { return !a.Connected() && !b.Connected() })
	if got := value(b.m.connected); got != 0 {
		t.Errorf("broker_nats_connected while down = %v", got)
	}
	if err := b.Ping(context.Background()); !errors.Is(err, ErrNotConnected) {
		t.Errorf("Ping while down: %v, want ErrNotConnected", err)
	}
	// Interest may change while disconnected; it is sent on reconnect.
	late := newInbox()
	subscribe(t, b, "presence.p", late.deliver)

	startServer(t, port)
	eventually(t, "both buses reconnect", func() bool { return a.Connected() && b.Connected() })
	if got := value(b.m.connected); got != 1 {
		t.Errorf("broker_nats_connected after reconnect = %v", got)
	}
	flush(t, a, b)
	publish(t, a, "peer.m.k", "after-restart")
	publish(t, a, "presence.p", "late")
	if got := in.next(t); got != "after-restart" {
		t.Fatalf("got %q", got)
	}
	if got := late.next(t); got != "late" {
		t.Fatalf("got %q", got)
	}
}

func TestCloseThenUse(t *testing.T) {
	s := startServer(t, -1)
	b := newBus(t, s.ClientURL(), "close")
	release := subscribe(t, b, "mesh.c", func([]byte) {})
	lingering := subscribe(t, b, "mesh.l", func([]byte) {})
	lingering()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	release() // safe after Close
	if _, err := b.Subscribe("mesh.c", func([]byte) {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v, want ErrClosed", err)
	}
	if err := b.Publish(context.Background(), "mesh.c", nil); err == nil {
		t.Fatal("Publish after Close succeeded")
	}
	if b.Connected() {
		t.Fatal("Connected after Close")
	}
	if g, n := gauge(b), subscriptionsHeld(b); g != 0 || n != 0 {
		t.Fatalf("after Close: gauge %v, nats subscriptions %d", g, n)
	}
}

func TestCloseWhileDisconnected(t *testing.T) {
	s := startServer(t, -1)
	b := newBus(t, s.ClientURL(), "down")
	subscribe(t, b, "mesh.d", func([]byte) {})
	s.Shutdown()
	eventually(t, "the bus sees the disconnect", func() bool { return !b.Connected() })
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Close hung while disconnected")
	}
}

func TestConcurrentChurnStaysConsistent(t *testing.T) {
	s := startServer(t, -1)
	b := newBus(t, s.ClientURL(), "churn", func(c *Config) { c.Linger = time.Millisecond })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				topic := fmt.Sprintf("peer.m.k%d", (g+i)%5)
				release, err := b.Subscribe(topic, func([]byte) {})
				if err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					_ = b.Publish(context.Background(), topic, []byte("x"))
				}
				release()
				if i%7 == 0 {
					release()
				}
			}
		})
	}
	wg.Wait()
	if err := b.ConsistencyCheck(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every lingering subscription is dropped", func() bool { return gauge(b) == 0 })
	if err := b.ConsistencyCheck(); err != nil {
		t.Fatal(err)
	}
}

func metricValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			id := mf.GetName()
			if len(m.GetLabel()) > 0 {
				id += "{"
				for i, l := range m.GetLabel() {
					if i > 0 {
						id += ","
					}
					id += fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
				}
				id += "}"
			}
			if id != name {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// A single node's embedded server opens no port: its bus connects in
// process (meshd serve without NATS_URL), and delivers as over TCP.
func TestInProcessEmbeddedServer(t *testing.T) {
	s, err := StartEmbedded(EmbeddedConfig{InProcessOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	if addr := s.srv.Addr(); addr != nil {
		t.Fatalf("in-process server listens on %v", addr)
	}
	a := newBus(t, "", "solo", func(c *Config) { c.InProcess = s.InProcess() })
	in := newInbox()
	subscribe(t, a, "mesh.m1", in.deliver)
	flush(t, a)
	publish(t, a, "mesh.m1", "hello")
	if got := in.next(t); got != "hello" {
		t.Fatalf("got %q", got)
	}
}
