package fanout

import (
	"errors"
	"fmt"
	"hash/fnv"
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
	return b.SubscribeAll([]string{topic}, []func([]byte){deliver})
}

// SubscribeAll is Subscribe for several topics at once (deliver[i] for
// topics[i]), all or none, with one confirming round trip to the server
// for the topics it creates (a hello takes three: its member key, its
// session key and its presence).
func (b *Bus) SubscribeAll(topics []string, deliver []func(data []byte)) (release func(), err error) {
	if len(topics) != len(deliver) {
		return nil, fmt.Errorf("fanout: subscribe: %d topics, %d callbacks", len(topics), len(deliver))
	}
	for i, t := range topics {
		if deliver[i] == nil {
			return nil, errors.New("fanout: subscribe: nil callback")
		}
		if err := validTopic(t); err != nil {
			return nil, fmt.Errorf("fanout: subscribe: %w", err)
		}
	}
	var rels []func()
	var created, joined []*interest
	releaseAll := func() {
		for _, r := range rels {
			r()
		}
	}
	for i, t := range topics {
		in, isNew, rel, err := b.addCallback(t, deliver[i])
		if err != nil {
			releaseAll()
			return nil, err
		}
		rels = append(rels, rel)
		if isNew {
			created = append(created, in)
		} else {
			joined = append(joined, in)
		}
	}
	if err := b.confirm(created, joined); err != nil {
		releaseAll()
		return nil, err
	}
	return releaseAll, nil
}

// addCallback registers deliver on topic, creating its NATS subscription
// when it is the first; the release is idempotent.
func (b *Bus) addCallback(topic string, deliver func([]byte)) (in *interest, created bool, release func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, false, nil, ErrClosed
	}
	in = b.topics[topic]
	created = in == nil
	if created {
		if in, err = b.subscribeLocked(topic); err != nil {
			return nil, false, nil, err
		}
	}
	b.nextID++
	id := b.nextID
	cbs := append(slices.Clone(in.list()), callback{id: id, deliver: deliver})
	in.callbacks.Store(&cbs)
	in.stopLingerLocked()
	var once sync.Once
	return in, created, func() { once.Do(func() { b.release(in, id) }) }, nil
}

// confirm makes the server register the interests before the caller relies
// on them: a publish right after, from another replica (a kick sent the
// moment hello_ack arrives), must reach us. One round trip covers every
// topic this call created; topics another caller created are waited for.
// While disconnected the SUBs are replayed on reconnect, so that is not an
// error.
func (b *Bus) confirm(created, joined []*interest) error {
	if len(created) > 0 {
		err := b.nc.FlushTimeout(subscribeFlushTimeout)
		for _, in := range created {
			close(in.confirmed)
		}
		if err != nil && b.nc.IsConnected() {
			return fmt.Errorf("fanout: subscribe %s: confirm: %w", created[0].topic, err)
		}
	}
	for _, in := range joined {
		select {
		case <-in.confirmed:
		case <-time.After(subscribeFlushTimeout):
			return fmt.Errorf("fanout: subscribe %s: not confirmed within %s", in.topic, subscribeFlushTimeout)
		}
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
	sub, err := b.natsSubscribe(topic, in)
	if err != nil {
		return nil, fmt.Errorf("fanout: subscribe %s: %w", topic, err)
	}
	in.sub = sub
	b.topics[topic] = in
	b.m.subscriptions.Inc()
	return in, nil
}

// natsSubscribe makes the NATS subscription of a new interest: a channel
// subscription into a shared shard for per-socket topics, a callback
// subscription (its own goroutine and pending limits) for the others.
func (b *Bus) natsSubscribe(topic string, in *interest) (*nats.Subscription, error) {
	switch kindOf(topic) {
	case kindPeer, kindPresence:
		h := fnv.New32a()
		_, _ = h.Write([]byte(topic))
		sub, err := b.nc.ChanSubscribe(b.subject(topic), b.socketMsgs[h.Sum32()%uint32(len(b.socketMsgs))])
		if err == nil {
			b.byChan.Store(sub, in)
		}
		return sub, err
	}
	sub, err := b.nc.Subscribe(b.subject(topic), func(m *nats.Msg) { b.deliver(in, m) })
	if err == nil {
		if err = sub.SetPendingLimits(b.pendingMsgs, pendingBytes); err != nil {
			_ = sub.Unsubscribe()
		}
	}
	return sub, err
}

// deliver runs on the subscription's NATS goroutine or a shard's
// dispatcher (never with Bus.mu).
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
	b.byChan.Delete(in.sub)
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
