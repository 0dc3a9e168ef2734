// Package client is the Go SDK for claudemesh-compatible brokers: it owns
// one WebSocket connection at a time (plus its reconnects) and speaks the
// client side of docs/protocol.md — hello/session_hello signing (B.2, B.3),
// send/ack/push with the client-side crypto of B.12, _reqId requests, WS
// liveness and reconnect backoff (B.1). meshctl, tests and load tools use it.
//
// Goroutines: per socket one read loop and one write loop (the only data
// writer); per Client one supervisor that waits for the socket to end and
// reconnects. Close stops them all and waits for them.
//
// Lock order: Client.mu, then keyCache.mu (never held together today).
package client

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd/wire"
)

// errorBuffer and frameBuffer bound Errors() and Frames(); when full, new
// entries are dropped and counted in Stats.
const (
	errorBuffer = 64
	frameBuffer = 256
)

// backoff is the reconnect schedule of B.1: 1, 2, 4, 8, 16 s, then 30 s.
var backoff = []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second}

func backoffDelay(attempt int) time.Duration {
	return backoff[min(attempt, len(backoff)-1)]
}

// Client is a connection to a broker. Its methods are safe for concurrent
// use.
type Client struct {
	cfg Config // immutable after Dial

	// Delivery channels: written by the read loop only, closed by the
	// supervisor after the last socket's loops have exited.
	pushes chan Message
	errs   chan wire.Error
	frames chan json.RawMessage

	reconnected chan struct{} // one-slot notification, never closed
	ctx         context.Context
	cancel      context.CancelCauseFunc
	done        chan struct{} // closed when the supervisor has exited
	keys        keyCache
	stats       counters

	mu       sync.Mutex
	cur      *conn               // guarded by mu; nil while disconnected
	ready    chan struct{}       // guarded by mu; closed while cur != nil
	pending  map[string]*pending // guarded by mu; keyed by sendKey/reqKey
	seq      uint64              // guarded by mu; orders pending for FIFO fallback
	err      error               // guarded by mu; terminal error, see Err
	helloAck *wire.HelloAck      // guarded by mu; of the current socket
}

// Dial connects to cfg.URL and completes the handshake. It fails if the
// first connection fails, even with cfg.Reconnect (a rejected hello returns
// *RejectedError). ctx bounds the dial and handshake only; the Client lives
// until Close or a terminal error.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg.Logger = cfg.Logger.With().Str("mesh", cfg.MeshID).Str("pubkey", cfg.routingPubkey()[:16]).Logger()
	c := &Client{
		cfg:         cfg,
		pushes:      make(chan Message, cfg.PushBuffer),
		errs:        make(chan wire.Error, errorBuffer),
		frames:      make(chan json.RawMessage, frameBuffer),
		reconnected: make(chan struct{}, 1),
		done:        make(chan struct{}),
		ready:       make(chan struct{}),
		pending:     make(map[string]*pending),
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	cn, ack, err := c.connect(ctx)
	if err != nil {
		c.cancel(err)
		return nil, err
	}
	c.attach(cn, ack)
	go c.run(cn)
	return c, nil
}

// attach makes cn the current socket.
func (c *Client) attach(cn *conn, ack *wire.HelloAck) {
	c.mu.Lock()
	c.cur, c.helloAck = cn, ack
	close(c.ready)
	c.mu.Unlock()
	c.cfg.Logger.Debug().Str("presence", ack.PresenceID).Msg("connected")
	c.emit(Event{Kind: EventConnected, HelloAck: ack})
}

// detach forgets cn and fails the requests that were written to it.
func (c *Client) detach(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == cn {
		c.cur = nil
		c.ready = make(chan struct{})
	}
	c.failPendingLocked(cn)
}

// run is the supervisor: it waits for the socket to end, then reconnects or
// finishes.
func (c *Client) run(cn *conn) {
	defer c.closeChannels()
	for cn != nil {
		err := c.serve(cn)
		if c.ctx.Err() != nil {
			return
		}
		c.cfg.Logger.Info().Err(err).Msg("disconnected")
		c.emit(Event{Kind: EventDisconnected, Err: err})
		if !c.cfg.Reconnect || isTerminal(err) {
			c.finish(err)
			return
		}
		cn = c.reconnect()
	}
}

// serve waits until cn ends (or the client is closed), then detaches it.
func (c *Client) serve(cn *conn) error {
	select {
	case <-cn.done:
	case <-c.ctx.Done():
		c.closeGracefully(cn)
	}
	cn.wg.Wait()
	c.detach(cn)
	return cn.err
}

// reconnect dials with the B.1 backoff until a handshake succeeds. It
// returns nil when the client is closed or a rejection is terminal.
func (c *Client) reconnect() *conn {
	for attempt := 0; ; attempt++ {
		d := backoffDelay(attempt)
		c.emit(Event{Kind: EventReconnecting, Attempt: attempt + 1, Delay: d})
		t := time.NewTimer(d)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		cn, ack, err := c.connect(c.ctx)
		if err == nil {
			c.stats.reconnects.Add(1)
			c.attach(cn, ack)
			select {
			case c.reconnected <- struct{}{}:
			default:
			}
			return cn
		}
		if c.ctx.Err() != nil {
			return nil
		}
		c.cfg.Logger.Warn().Err(err).Int("attempt", attempt+1).Msg("reconnect failed")
		c.emit(Event{Kind: EventReconnectFailed, Attempt: attempt + 1, Err: err})
		if isTerminal(err) {
			c.finish(err)
			return nil
		}
	}
}

// finish ends the client with a terminal error.
func (c *Client) finish(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	c.cfg.Logger.Warn().Err(err).Msg("client stopped")
	c.emit(Event{Kind: EventTerminal, Err: err})
	c.cancel(err)
}

func (c *Client) closeChannels() {
	close(c.pushes)
	close(c.errs)
	close(c.frames)
	close(c.done)
}

func (c *Client) emit(ev Event) {
	if c.cfg.OnEvent != nil {
		c.cfg.OnEvent(ev)
	}
}

// Close sends a normal close frame, waits briefly for the broker's echo,
// stops reconnecting and waits for every goroutine of the client. Pending
// requests fail with ErrConnectionLost. Close is idempotent.
func (c *Client) Close() error {
	c.cancel(ErrClosed)
	<-c.done
	return nil
}

// Done is closed when the client has stopped: after Close, after a
// terminal close (4001/4002), or after a lost connection without Reconnect.
// Pushes, Errors and Frames are closed just before it.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped: nil while running or after Close, else the
// terminal error (*CloseError, *RejectedError from a reconnect, ErrStale,
// or an ErrConnectionLost-wrapping error).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Reconnected receives a value after each successful reconnect (one slot:
// several reconnects between reads collapse into one notification).
func (c *Client) Reconnected() <-chan struct{} { return c.reconnected }

// HelloAck returns the hello_ack of the current socket, nil while
// disconnected.
func (c *Client) HelloAck() *wire.HelloAck {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return nil
	}
	return c.helloAck
}

// Pubkey is the key peers address this connection by: the session pubkey
// with a session identity, else the member pubkey.
func (c *Client) Pubkey() string { return c.cfg.routingPubkey() }

// Pushes delivers pushes in arrival order, decoded (see Message). Capacity
// is Config.PushBuffer. Overflow policy: when it is full the new push is
// dropped (Stats.PushesDropped) rather than stalling the read loop, and it
// is not client_acked, so with AckPushes the broker redelivers it after its
// claim lease (A.3-4); without AckPushes it is lost.
func (c *Client) Pushes() <-chan Message { return c.pushes }

// Errors delivers error frames that answer no pending request (e.g.
// no_hello, unknown_message_type). Capacity 64; overflow drops the new
// frame (Stats.ErrorsDropped).
func (c *Client) Errors() <-chan wire.Error { return c.errs }

// Frames delivers any other frame no request consumed (state_change,
// stream_data, acks of fire-and-forget frames, …) as raw JSON. Capacity
// 256; overflow drops the new frame (Stats.FramesDropped).
func (c *Client) Frames() <-chan json.RawMessage { return c.frames }

// Stats are cumulative counters of a Client.
type Stats struct {
	PushesDropped uint64 // Pushes() was full
	ErrorsDropped uint64 // Errors() was full
	FramesDropped uint64 // Frames() was full
	Malformed     uint64 // inbound frames that were not JSON
	Reconnects    uint64 // successful reconnects
}

type counters struct {
	pushesDropped, errorsDropped, framesDropped, malformed, reconnects atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	return Stats{
		PushesDropped: c.stats.pushesDropped.Load(),
		ErrorsDropped: c.stats.errorsDropped.Load(),
		FramesDropped: c.stats.framesDropped.Load(),
		Malformed:     c.stats.malformed.Load(),
		Reconnects:    c.stats.reconnects.Load(),
	}
}
