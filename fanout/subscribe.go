package fanout

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// callback is one local Subscribe.
type callback struct {
	id      uint64
	deliver func(data []byte)
}

// interest is the local interest in one topic: one NATS subscription shared
// by every local callback for it.
type interest struct {
	// immutable once in Bus.topics
	topic    string
	sub      *nats.Subscription
	received prometheus.Counter // broker_fanout_received_total{kind}

	// confirmed is closed once the server acknowledged the subscription
	// (or it was created while disconnected, when the client replays it on
	// reconnect); later subscribers of the topic wait for it too, so none
	// returns before the interest is registered server-side.
	confirmed chan struct{}

	// callbacks is read by the subscription's NATS delivery goroutine
	// without a lock and replaced (copy on write) with Bus.mu held.
	callbacks atomic.Pointer[[]callback]

	// guarded by Bus.mu
	linger *time.Timer // scheduled unsubscribe; non-nil iff no callbacks remain
	gen    uint64      // bumped whenever linger is stopped, so a timer that already fired knows it lost
}

func (in *interest) list() []callback { return *in.callbacks.Load() }

// Subscribe registers deliver for every message published on topic, on any
// replica. The first Subscribe for a topic creates its NATS subscription;
// later ones only add a callback. release drops this callback and is
// idempotent; when the last callback is released the NATS subscription is
// removed after the configured linger, unless interest returns first.
//
// deliver runs on the topic's NATS delivery goroutine, in publish order,
// with the message's data (shared by all callbacks of the topic: do not
// modify or retain it). It must not block: a callback that stalls holds up
// every callback of the topic, and once Config.PendingMsgs messages are
// queued NATS drops further ones for that topic (slow consumer). Enqueue on a
// bounded queue and return. A message already being delivered when release
// returns may still reach the released callback once.
func (b *Bus) Subscribe(topic string, deliver func(data []byte)) (release func(), err error) {
	if deliver == nil {
		return nil, errors.New("fanout: subscribe: nil callback")
	}
	if err := validTopic(topic); err != nil {
		return nil, fmt.Errorf("fanout: subscribe: %w", err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	in := b.topics[topic]
	created := in == nil
	if created {
		if in, err = b.subscribeLocked(topic); err != nil {
			b.mu.Unlock()
			return nil, err
		}
	}
	b.nextID++
	id := b.nextID
	cbs := append(slices.Clone(in.list()), callback{id: id, deliver: deliver})
	in.callbacks.Store(&cbs)
	in.stopLingerLocked()
	b.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { b.release(in, id) }) }
	if err := b.confirm(in, created); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// confirm makes the server register the interest before the caller relies
// on it: a publish right after, from another replica (a kick sent the
// moment hello_ack arrives), must reach us. The creator of the topic does
// the round trip; later subscribers wait for it. While disconnected the
// SUB is replayed on reconnect, so that is not an error.
func (b *Bus) confirm(in *interest, created bool) error {
	if !created {
		select {
		case <-in.confirmed:
			return nil
		case <-time.After(subscribeFlushTimeout):
			return fmt.Errorf("fanout: subscribe %s: not confirmed within %s", in.topic, subscribeFlushTimeout)
		}
	}
	err := b.nc.FlushTimeout(subscribeFlushTimeout)
	close(in.confirmed)
	if err != nil && b.nc.IsConnected() {
		return fmt.Errorf("fanout: subscribe %s: confirm: %w", in.topic, err)
	}
	return nil
}

// subscribeFlushTimeout bounds the round trip that confirms a new
// subscription with the server.
const subscribeFlushTimeout = time.Second

// subscribeLocked creates the NATS subscription for topic and records it.
// It is the only place a subscription is added: on any failure nothing is
// left registered, neither in NATS nor in b.topics nor in the gauge.
func (b *Bus) subscribeLocked(topic string) (*interest, error) {
	in := &interest{topic: topic, received: b.m.received.WithLabelValues(kindOf(topic)), confirmed: make(chan struct{})}
	in.callbacks.Store(&[]callback{})
	sub, err := b.nc.Subscribe(b.subject(topic), func(m *nats.Msg) { b.deliver(in, m) })
	if err == nil {
		if err = sub.SetPendingLimits(b.pendingMsgs, pendingBytes); err != nil {
			_ = sub.Unsubscribe()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("fanout: subscribe %s: %w", topic, err)
	}
	in.sub = sub
	b.topics[topic] = in
	b.m.subscriptions.Inc()
	return in, nil
}

// deliver runs on the subscription's NATS goroutine (never with Bus.mu).
func (b *Bus) deliver(in *interest, m *nats.Msg) {
	in.received.Inc()
	for _, cb := range in.list() {
		cb.deliver(m.Data)
	}
}

// release drops callback id from in and, if it was the last one, schedules
// the unsubscribe after the linger.
func (b *Bus) release(in *interest, id uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cbs := slices.DeleteFunc(slices.Clone(in.list()), func(cb callback) bool { return cb.id == id })
	in.callbacks.Store(&cbs)
	if len(cbs) > 0 || b.closed || b.topics[in.topic] != in {
		return
	}
	gen := in.gen
	in.linger = time.AfterFunc(b.linger, func() { b.expire(in, gen) })
}

// expire removes in's NATS subscription if no interest came back since the
// linger timer of generation gen was scheduled.
func (b *Bus) expire(in *interest, gen uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if in.gen != gen || in.linger == nil || b.closed || b.topics[in.topic] != in {
		return // interest returned, or Close already dropped everything
	}
	in.linger = nil
	delete(b.topics, in.topic)
	b.m.subscriptions.Dec()
	if err := in.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		b.log.Warn().Err(err).Str("topic", in.topic).Msg("nats unsubscribe failed")
	}
}

// stopLingerLocked cancels a scheduled unsubscribe; a timer that already
// fired and waits for Bus.mu sees the bumped generation and does nothing.
func (in *interest) stopLingerLocked() {
	if in.linger == nil {
		return
	}
	in.linger.Stop()
	in.linger = nil
	in.gen++
}

// ConsistencyCheck cross-checks the topic map, the NATS connection's
// subscriptions and the broker_fanout_subscriptions gauge. Tests call it;
// it is cheap enough for a debug endpoint.
func (b *Bus) ConsistencyCheck() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for topic, in := range b.topics {
		errs = append(errs, b.checkInterestLocked(topic, in))
	}
	if n := b.nc.NumSubscriptions(); n != len(b.topics) {
		errs = append(errs, fmt.Errorf("%w: %d topics but %d nats subscriptions", ErrInconsistent, len(b.topics), n))
	}
	var g dto.Metric
	if err := b.m.subscriptions.Write(&g); err != nil {
		errs = append(errs, err)
	} else if v := g.GetGauge().GetValue(); v != float64(len(b.topics)) {
		errs = append(errs, fmt.Errorf("%w: %d topics but subscriptions gauge %v", ErrInconsistent, len(b.topics), v))
	}
	return errors.Join(errs...)
}

func (b *Bus) checkInterestLocked(topic string, in *interest) error {
	switch {
	case in.topic != topic:
		return fmt.Errorf("%w: topic %q stored under %q", ErrInconsistent, in.topic, topic)
	case in.sub == nil || !in.sub.IsValid():
		return fmt.Errorf("%w: topic %q has no valid nats subscription", ErrInconsistent, topic)
	case in.sub.Subject != b.subject(topic):
		return fmt.Errorf("%w: topic %q subscribed as %q", ErrInconsistent, topic, in.sub.Subject)
	case len(in.list()) == 0 && in.linger == nil:
		return fmt.Errorf("%w: topic %q has no callbacks and no scheduled unsubscribe", ErrInconsistent, topic)
	case len(in.list()) > 0 && in.linger != nil:
		return fmt.Errorf("%w: topic %q has callbacks and a scheduled unsubscribe", ErrInconsistent, topic)
	}
	return nil
}
