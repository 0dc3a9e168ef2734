// Package fanout owns meshd's NATS connection: the subject scheme, the
// interest-based subscriptions that carry cross-replica pushes, and the
// callbacks into the broker. It implements broker.Fanout (wired in cmd/meshd)
// and imports neither broker, store nor ha.
//
// Subjects are "<prefix>.<topic>": topics are the broker's logical names
// ("mesh.<id>", "peer.<mesh>.<pubkey>", "presence.<id>", "stream.…"), and the
// prefix (default "meshd") lets test runs and several deployments share one
// NATS. A replica holds exactly one NATS subscription per topic that has
// local interest, whatever the number of local callbacks; it unsubscribes a
// short linger after the last local callback is released.
//
// Delivery is at most once and best effort: NATS core drops messages while
// a replica is disconnected or when a topic's pending queue overflows (slow
// consumer, counted and logged). The broker treats a message as a doorbell
// and recovers anything missed from PostgreSQL (the periodic re-drain).
//
// Lock order: Bus.mu, then the nats.Conn's internal locks (Subscribe and
// Unsubscribe are called with Bus.mu held). NATS callbacks — message
// delivery, connection and error handlers — never take Bus.mu; delivery reads
// a copy-on-write snapshot of the callbacks instead.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Defaults for zero Config fields.
const (
	DefaultPrefix        = "meshd"
	DefaultName          = "meshd"
	DefaultLinger        = 2 * time.Second
	DefaultReconnectWait = 2 * time.Second
	DefaultPendingMsgs   = 8192
)

const (
	// pendingBytes bounds the bytes queued per topic subscription, next to
	// Config.PendingMsgs: a stalled callback must cost bounded memory, not
	// grow until the process is killed (the nats.go default is 64 MiB per
	// subscription, too much for thousands of topics).
	pendingBytes = 16 << 20
	// drainTimeout bounds Close: pending messages get this long to be
	// handed to callbacks and buffered publishes to be flushed.
	drainTimeout = 10 * time.Second
	// connectTimeout bounds the initial dial when ctx has no earlier deadline.
	connectTimeout = 5 * time.Second
	// pingTimeout bounds Ping when ctx has no deadline.
	pingTimeout = 5 * time.Second
)

// Config configures a Bus. Zero values take the documented defaults.
type Config struct {
	// URL of the NATS server(s), comma separated (required unless
	// InProcess is set).
	URL string
	// InProcess connects to an embedded server inside this process
	// without a socket (EmbeddedServer.InProcess); URL is then ignored.
	InProcess nats.InProcessConnProvider
	// Prefix is prepended to every subject: "<Prefix>.<topic>". Dotted
	// prefixes are allowed; wildcards are not. Default "meshd".
	Prefix string
	// Name is the client name shown in the NATS server's monitoring.
	// Default "meshd".
	Name string
	// Linger is how long a topic's NATS subscription is kept after its last
	// local callback is released, so flapping clients don't churn the
	// server's interest graph. Default 2s; must not be negative.
	Linger time.Duration
	// ReconnectWait is the pause between reconnect attempts (the client
	// reconnects forever). Default 2s.
	ReconnectWait time.Duration
	// PendingMsgs bounds the messages queued per topic subscription while
	// callbacks run; beyond it NATS drops messages for that topic (a slow
	// consumer, counted in broker_fanout_slow_consumer_total). Default 8192.
	PendingMsgs int
	// Logger receives connection state changes and slow-consumer warnings.
	// The zero Logger discards.
	Logger zerolog.Logger
	// Registerer receives the metrics (required).
	Registerer prometheus.Registerer
}

// withDefaults validates c and returns it with defaults filled in.
func (c Config) withDefaults() (Config, error) {
	if c.URL == "" && c.InProcess == nil {
		return c, errors.New("fanout: config: URL is required")
	}
	if c.Registerer == nil {
		return c, errors.New("fanout: config: Registerer is required")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if err := validTopic(c.Prefix); err != nil {
		return c, fmt.Errorf("fanout: config: Prefix: %w", err)
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Linger < 0 || c.ReconnectWait < 0 || c.PendingMsgs < 0 {
		return c, errors.New("fanout: config: Linger, ReconnectWait and PendingMsgs must not be negative")
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.ReconnectWait == 0 {
		c.ReconnectWait = DefaultReconnectWait
	}
	if c.PendingMsgs == 0 {
		c.PendingMsgs = DefaultPendingMsgs
	}
	return c, nil
}

// Bus is one replica's NATS connection with refcounted topic interest.
type Bus struct {
	// immutable after New
	nc          *nats.Conn
	prefix      string
	linger      time.Duration
	pendingMsgs int
	log         zerolog.Logger
	m           *metrics
	done        chan struct{} // closed by the ClosedHandler
	doneOnce    sync.Once

	// Per-socket topics (peer.*, presence.*: thousands, with callbacks that
	// only kick or close a socket) are channel subscriptions into shared,
	// not one goroutine each as nats.go gives a callback subscription: at
	// 10,000 sockets × 3 topics that was 30,000 goroutines (issue 10:
	// memory per connection). socketMsgs feeds one dispatcher per shard
	// (a topic always maps to the same shard, so its order holds); byChan
	// maps a channel subscription to its interest. mesh.* and stream.*
	// topics keep a goroutine each, so a stalled one cannot hold up others.
	socketMsgs []chan *nats.Msg
	byChan     sync.Map // *nats.Subscription → *interest
	dispatched sync.WaitGroup

	mu     sync.Mutex
	topics map[string]*interest // guarded by mu; one entry per NATS subscription
	nextID uint64               // guarded by mu; callback ids
	closed bool                 // guarded by mu
}

// New validates cfg and connects to NATS. The initial connection must
// succeed (bounded by ctx and a 5 s dial timeout); after that the client
// reconnects forever and resubscribes every topic on its own.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fanout: connect: %w", context.Cause(ctx))
	}
	b := &Bus{
		prefix:      cfg.Prefix,
		linger:      cfg.Linger,
		pendingMsgs: cfg.PendingMsgs,
		log:         cfg.Logger.With().Str("component", "fanout").Logger(),
		done:        make(chan struct{}),
		topics:      make(map[string]*interest),
	}
	b.m = newMetrics(b.connectedValue)
	for range socketShards {
		b.socketMsgs = append(b.socketMsgs, make(chan *nats.Msg, cfg.PendingMsgs))
	}
	nc, err := nats.Connect(cfg.URL, b.options(ctx, cfg)...)
	if err != nil {
		// The URL may carry credentials: it is not part of the error.
		return nil, fmt.Errorf("fanout: connect: %w", err)
	}
	b.nc = nc
	if err := b.m.register(cfg.Registerer); err != nil {
		nc.Close()
		return nil, err
	}
	for _, ch := range b.socketMsgs {
		b.dispatched.Go(func() { b.dispatch(ch) })
	}
	b.log.Info().Str("url", nc.ConnectedUrlRedacted()).Str("prefix", b.prefix).Msg("nats connected")
	return b, nil
}

// socketShards is the number of dispatchers for per-socket topics.
const socketShards = 4

// dispatch delivers the messages of one shard of channel subscriptions
// until the Bus closes.
func (b *Bus) dispatch(ch chan *nats.Msg) {
	for {
		select {
		case m := <-ch:
			if in, ok := b.byChan.Load(m.Sub); ok {
				b.deliver(in.(*interest), m)
			}
		case <-b.done:
			return
		}
	}
}

func (b *Bus) options(ctx context.Context, cfg Config) []nats.Option {
	timeout := connectTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(cfg.ReconnectWait),
		nats.DrainTimeout(drainTimeout),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // Close, which logs for itself
			}
			b.log.Warn().Err(err).Msg("nats disconnected; reconnecting")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.log.Info().Str("url", nc.ConnectedUrlRedacted()).Msg("nats reconnected")
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			b.doneOnce.Do(func() { close(b.done) })
		}),
		nats.ErrorHandler(b.handleAsyncError),
	}
	if cfg.InProcess != nil {
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	}
	return opts
}

// handleAsyncError is the nats.go error callback. A slow consumer is a topic
// whose callbacks fell PendingMsgs behind: NATS dropped messages for that
// topic only, the connection and other topics are unaffected. nats.go
// reports it once per episode, so logging each one is bounded.
func (b *Bus) handleAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrSlowConsumer) {
		b.log.Error().Err(err).Msg("nats async error")
		return
	}
	b.m.slowConsumers.Inc()
	ev := b.log.Warn()
	if sub != nil {
		dropped, _ := sub.Dropped()
		ev = ev.Str("subject", sub.Subject).Int("dropped", dropped)
	}
	ev.Msg("nats slow consumer: messages dropped")
}

func (b *Bus) connectedValue() float64 {
	if b.nc != nil && b.nc.IsConnected() {
		return 1
	}
	return 0
}

// Connected reports whether the NATS connection is up right now.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// Ping round-trips to the NATS server (health). It fails at once while
// disconnected; without a deadline on ctx it waits at most 5 s.
func (b *Bus) Ping(ctx context.Context) error {
	if !b.nc.IsConnected() {
		return ErrNotConnected
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pingTimeout)
		defer cancel()
	}
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("fanout: ping: %w", err)
	}
	return nil
}

// Publish sends data to every subscriber of topic on every replica, this
// one included. It does not block on the network: nats.go buffers the
// message (up to its 8 MiB reconnect buffer while disconnected, beyond which
// it fails), so ctx is only checked up front.
func (b *Bus) Publish(ctx context.Context, topic string, data []byte) error {
	kind := kindOf(topic)
	err := validTopic(topic)
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err == nil {
		err = b.nc.Publish(b.subject(topic), data)
	}
	if err != nil {
		b.m.publishErrors.WithLabelValues(kind).Inc()
		return fmt.Errorf("fanout: publish: %w", err)
	}
	b.m.published.WithLabelValues(kind).Inc()
	return nil
}

func (b *Bus) subject(topic string) string { return b.prefix + "." + topic }

// Close drops every topic, drains the connection (pending messages are
// still handed to callbacks, buffered publishes are flushed) and closes it,
// within a bounded time. Later Subscribe calls fail with ErrClosed;
// releasing earlier subscriptions stays safe.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	for topic, in := range b.topics {
		in.stopLingerLocked()
		delete(b.topics, topic)
		b.m.subscriptions.Dec()
	}
	b.mu.Unlock()

	// Drain unsubscribes everything itself; when reconnecting it closes
	// instead and says so, and an already closed conn has nothing to drain.
	if err := b.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionReconnecting) && !errors.Is(err, nats.ErrConnectionClosed) {
		b.nc.Close()
	}
	select {
	case <-b.done:
	case <-time.After(drainTimeout + time.Second):
		b.nc.Close()
		b.dispatched.Wait()
		return errors.New("fanout: close: drain timed out")
	}
	b.dispatched.Wait()
	b.log.Info().Msg("nats connection closed")
	return nil
}
