package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd/client"
)

// fleetOpts are the client settings of a mode.
type fleetOpts struct {
	reconnect bool // storm: clients re-dial after losing their replica
	receive   bool // burst/steady: drain pushes into the ledger
}

// fleet is the connected clients of a run.
type fleet struct {
	b       *bench
	members []*member
	opts    fleetOpts
	clients []*client.Client // index = member idx; nil until dialed
	links   []*linkLog
	up      atomic.Int64 // sockets currently attached
	recv    sync.WaitGroup
}

func newFleet(b *bench, members []*member, opts fleetOpts) *fleet {
	f := &fleet{b: b, members: members, opts: opts, clients: make([]*client.Client, len(members)), links: make([]*linkLog, len(members))}
	for i := range f.links {
		f.links[i] = &linkLog{}
	}
	return f
}

// dialer is shared by all clients: no cookie jar, so a load balancer in
// front of the replicas balances each connection on its own.
var dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 4096}

func (f *fleet) config(mb *member) client.Config {
	links := f.links[mb.idx]
	return client.Config{
		URL: mb.wsURL, MeshID: mb.mesh, MemberID: mb.id, Member: mb.key,
		SessionID: fmt.Sprintf("bench-%s-%d", f.b.runID, mb.idx), DisplayName: fmt.Sprintf("bench-%d", mb.idx),
		CWD: "/bench", PID: 20000 + mb.idx, AckPushes: true, Reconnect: f.opts.reconnect,
		Dialer: dialer, RequestTimeout: 60 * time.Second, PushBuffer: 16384,
		OnEvent: func(ev client.Event) { f.event(links, ev) },
	}
}

func (f *fleet) event(l *linkLog, ev client.Event) {
	switch ev.Kind {
	case client.EventConnected:
		f.up.Add(1)
	case client.EventDisconnected:
		f.up.Add(-1)
	}
	l.record(ev)
}

// dialAll connects every member with cfg.Dials dials in flight.
func (f *fleet) dialAll(ctx context.Context) (dialStats, error) {
	ds := dialStats{Hello: &samples{}}
	sem := make(chan struct{}, f.b.cfg.Dials)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	start := time.Now()
	for _, mb := range f.members {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := f.dialOne(ctx, mb, ds.Hello)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ds.Failed++
				errs = append(errs, err)
				return
			}
			ds.OK++
		}()
	}
	wg.Wait()
	ds.Wall = time.Since(start)
	if len(errs) > 0 {
		return ds, fmt.Errorf("%d of %d dials failed, first: %w", len(errs), len(f.members), errs[0])
	}
	return ds, nil
}

func (f *fleet) dialOne(ctx context.Context, mb *member, hello *samples) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t := time.Now()
	c, err := client.Dial(dctx, f.config(mb))
	if err != nil {
		return fmt.Errorf("dial member %d on %s: %w", mb.idx, mb.wsURL, err)
	}
	hello.add(time.Since(t))
	f.b.mu.Lock()
	f.clients[mb.idx] = c
	f.b.mu.Unlock()
	if f.opts.receive {
		f.recv.Add(1)
		go f.receive(c)
	} else {
		go discard(c)
	}
	return nil
}

// receive feeds c's bench DMs into the ledger.
func (f *fleet) receive(c *client.Client) {
	defer f.recv.Done()
	for m := range c.Pushes() {
		if m.System() {
			continue
		}
		at := time.Now()
		if sentAt, ok := parsePayload(m.Plaintext); ok {
			f.b.led.received(m.Push.MessageID, sentAt, at)
		}
	}
}

// discard drains a client that only holds its connection (system pushes
// such as peer_joined would otherwise fill its buffer).
func discard(c *client.Client) {
	for range c.Pushes() {
	}
}

// client returns member i's client (nil if it never connected).
func (f *fleet) client(i int) *client.Client {
	f.b.mu.Lock()
	defer f.b.mu.Unlock()
	return f.clients[i]
}

// close closes every client, 64 at a time.
func (f *fleet) close() {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for i := range f.clients {
		c := f.client(i)
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() { defer func() { <-sem; wg.Done() }(); _ = c.Close() }()
	}
	wg.Wait()
	f.recv.Wait()
}

// stoppedErr returns a client that stopped for good, if any.
func (f *fleet) stoppedErr() error {
	for i := range f.clients {
		if c := f.client(i); c != nil {
			select {
			case <-c.Done():
				if err := c.Err(); err != nil && !errors.Is(err, client.ErrClosed) {
					return fmt.Errorf("client %d stopped: %w", i, err)
				}
			default:
			}
		}
	}
	return nil
}

// reconnects is how many sockets the clients re-established.
func (f *fleet) reconnects() uint64 {
	var n uint64
	for i := range f.clients {
		if c := f.client(i); c != nil {
			n += c.Stats().Reconnects
		}
	}
	return n
}
