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
	"github.com/meshd/meshd/internal/linklog"
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
	links   []*linklog.Log
	up      atomic.Int64 // sockets currently attached
	recv    sync.WaitGroup
	// picked counts, per member, the messages its receiver took from
	// Pushes(); bounds[i][k] is how many messages member i's client had
	// offered to Pushes() when its socket k+1 closed (see epoch).
	picked  []atomic.Int64
	barrier []chan chan int64 // bound → receiver: drain, answer the count
	bmu     sync.Mutex
	bounds  [][]int64 // guarded by bmu
}

func newFleet(b *bench, members []*member, opts fleetOpts) *fleet {
	f := &fleet{b: b, members: members, opts: opts, clients: make([]*client.Client, len(members)), links: make([]*linklog.Log, len(members)),
		picked: make([]atomic.Int64, len(members)), bounds: make([][]int64, len(members)), barrier: make([]chan chan int64, len(members))}
	for i := range f.barrier {
		f.barrier[i] = make(chan chan int64)
	}
	for i := range f.links {
		f.links[i] = linklog.New()
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
		Dialer: f.b.dialerFor(mb), RequestTimeout: 60 * time.Second, PushBuffer: f.pushBuffer(),
		OnEvent: func(ev client.Event) { f.event(mb.idx, links, ev) },
	}
}

// pushBuffer sizes each client's Pushes() channel. Its buffer is allocated
// in full and, holding pointers, scanned whole by every GC cycle: at 16,384
// pushes (~5.7 MB a client) the load tool spent 40 % of its CPU in GC
// marking during an idle run of 2,000 clients, CPU the brokers under test
// did not get (docs/benchmarks.md). A fleet that drains its pushes into the
// ledger takes each one at once, so 4,096 is ample; one that discards them
// (idle, storm) needs only a few. A full buffer drops the push unacked (the
// broker redelivers it) and counts it in the report's "pushes dropped".
func (f *fleet) pushBuffer() int {
	if f.opts.receive {
		return 4096
	}
	return 64
}

func (f *fleet) event(idx int, l *linklog.Log, ev client.Event) {
	switch ev.Kind {
	case client.EventConnected:
		f.up.Add(1)
	case client.EventDisconnected:
		f.up.Add(-1)
		f.bound(idx)
	}
	l.Record(ev)
}

// bound records how many messages member idx's client had offered to
// Pushes() when a socket closed. The client emits EventDisconnected after
// the socket's read loop ended and before it dials again, so nothing is
// offered meanwhile: the receiver drains what is buffered and answers
// with its count (a barrier in the same stream as the pushes). Without a
// receiver (idle, storm) there is nothing to account for.
func (f *fleet) bound(idx int) {
	if !f.opts.receive {
		return
	}
	reply := make(chan int64, 1)
	var offered int64
	select {
	case f.barrier[idx] <- reply:
		offered = <-reply
	case <-time.After(10 * time.Second):
		// The receiver did not answer (it should within milliseconds):
		// count the bound as unknown, which makes no duplicate explained.
		offered = -1
	}
	f.bmu.Lock()
	f.bounds[idx] = append(f.bounds[idx], offered)
	f.bmu.Unlock()
}

// epoch is the socket generation (0 for the first) on which member idx's
// client read the message it picked as number pick (1-based): the number
// of its sockets that had closed before that message was offered.
func (f *fleet) epoch(idx int, pick int64) int {
	f.bmu.Lock()
	defer f.bmu.Unlock()
	e := 0
	for _, b := range f.bounds[idx] {
		if b < 0 {
			return -1 << 30
		}
		if b < pick {
			e++
		}
	}
	return e
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
		go f.receive(c, mb.idx)
	} else {
		go discard(c)
	}
	return nil
}

// receive feeds c's bench DMs into the ledger.
// Every message picked counts toward f.picked, system pushes included,
// since the socket bounds count them too.
func (f *fleet) receive(c *client.Client, idx int) {
	defer f.recv.Done()
	for {
		select {
		case m, ok := <-c.Pushes():
			if !ok {
				return
			}
			f.take(idx, m)
		case reply := <-f.barrier[idx]:
			for drained := false; !drained; {
				select {
				case m, ok := <-c.Pushes():
					if ok {
						f.take(idx, m)
					} else {
						drained = true
					}
				default:
					drained = true
				}
			}
			reply <- f.picked[idx].Load()
		}
	}
}

// take books one message member idx picked from Pushes().
func (f *fleet) take(idx int, m client.Message) {
	pick := f.picked[idx].Add(1)
	if m.System() {
		return
	}
	if sentAt, ok := parsePayload(m.Plaintext); ok {
		f.b.led.receivedBy(m.Push.MessageID, sentAt, time.Now(), pushAt{member: idx, pick: pick})
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

// droppedPushes is how many pushes the clients dropped because their
// Pushes() buffer was full (each left unacked, so the broker redelivers it).
func (f *fleet) droppedPushes() uint64 {
	return f.sumStats(func(s client.Stats) uint64 { return s.PushesDropped })
}

// reconnects is how many sockets the clients re-established.
func (f *fleet) reconnects() uint64 {
	return f.sumStats(func(s client.Stats) uint64 { return s.Reconnects })
}

// sumStats adds one counter of every dialed client's Stats.
func (f *fleet) sumStats(of func(client.Stats) uint64) uint64 {
	var n uint64
	for i := range f.clients {
		if c := f.client(i); c != nil {
			n += of(c.Stats())
		}
	}
	return n
}
