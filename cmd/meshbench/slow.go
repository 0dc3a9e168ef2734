package main

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Slow consumers (steady --slow K): the last K members read their socket
// at --slow-bps bytes per second through a small receive buffer, so the
// broker sees a client that really reads slowly (TCP backpressure), not
// one that reads fast and queues in the client. Half of the other
// senders address a slow consumer. Reading is throttled while the load
// runs; the drain reads at full speed so the run ends in bounded time.

// slowChunkEvery is the throttle's period: at most bps/20 bytes a read.
const slowChunkEvery = 50 * time.Millisecond

// throttle is shared by the slow consumers' connections.
type throttle struct {
	bps int
	on  atomic.Bool
}

// slow reports whether member i is a slow consumer.
func (b *bench) slow(i int) bool { return b.cfg.Slow > 0 && i >= b.cfg.Peers-b.cfg.Slow }

// dialerFor is the shared dialer, or a throttled one for a slow consumer.
func (b *bench) dialerFor(mb *member) *websocket.Dialer {
	if !b.slow(mb.idx) {
		return dialer
	}
	nd := &net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 4096,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &slowConn{Conn: c, t: &b.throttle}, nil
		}}
}

// slowConn reads at most t.bps/20 bytes every 50 ms while t is on.
type slowConn struct {
	net.Conn
	t *throttle
}

func (c *slowConn) Read(p []byte) (int, error) {
	if !c.t.on.Load() {
		return c.Conn.Read(p)
	}
	time.Sleep(slowChunkEvery)
	if n := max(c.t.bps/20, 1); len(p) > n {
		p = p[:n]
	}
	return c.Conn.Read(p)
}
