package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd/wire"
)

const (
	// outQueue bounds frames waiting for the write loop. When it is full,
	// callers block (bounded by their context and by WriteTimeout, after
	// which a stuck socket is torn down): backpressure, never a drop.
	outQueue = 256
	// maxFrameBytes bounds one inbound frame so a broken or hostile broker
	// cannot make us buffer without limit. Brokers cap client frames at
	// MAX_MESSAGE_BYTES (64 KiB) but their own frames (peers_list of a large
	// mesh) can be bigger.
	maxFrameBytes = 16 << 20
	// closeWait bounds the graceful close handshake in Close.
	closeWait = time.Second
)

// conn is one authenticated socket. A Client replaces it on reconnect.
type conn struct {
	ws   *websocket.Conn // Read*: read loop only; Write*: write loop only (WriteControl may be concurrent, as gorilla allows)
	out  chan []byte     // frames for the write loop; bounded by outQueue
	done chan struct{}   // closed by shutdown
	once sync.Once
	err  error // why the socket ended; written once before done is closed

	lastRecv atomic.Int64 // unix ns of the last frame, ping or pong received
	wg       sync.WaitGroup
}

// shutdown records why the socket ended (first caller wins) and closes it.
func (cn *conn) shutdown(err error) {
	cn.once.Do(func() {
		cn.err = err
		close(cn.done)
		_ = cn.ws.Close()
	})
}

func (cn *conn) touch() { cn.lastRecv.Store(time.Now().UnixNano()) }

// enqueue hands a frame to the write loop.
func (cn *conn) enqueue(ctx context.Context, b []byte) error {
	select {
	case cn.out <- b:
		return nil
	case <-cn.done:
		return fmt.Errorf("%w: %v", ErrConnectionLost, cn.err)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// connect dials, performs the handshake and starts the connection's loops.
func (c *Client) connect(ctx context.Context) (*conn, *wire.HelloAck, error) {
	ws, _, err := c.cfg.Dialer.DialContext(ctx, c.cfg.URL, c.cfg.Header)
	if err != nil {
		return nil, nil, fmt.Errorf("client: dial %s: %w", c.cfg.URL, err)
	}
	ws.SetReadLimit(maxFrameBytes)
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	ack, early, err := c.handshake(ws)
	if !stop() || err != nil {
		_ = ws.Close()
		if ctx.Err() != nil {
			return nil, nil, context.Cause(ctx)
		}
		return nil, nil, err
	}
	_ = ws.SetReadDeadline(time.Time{})
	cn := &conn{ws: ws, out: make(chan []byte, outQueue), done: make(chan struct{})}
	cn.touch()
	ws.SetPongHandler(func(string) error { cn.touch(); return nil })
	ws.SetPingHandler(func(data string) error {
		cn.touch()
		return c.pong(ws, data)
	})
	cn.wg.Add(2)
	go c.readLoop(cn, early)
	go c.writeLoop(cn)
	return cn, ack, nil
}

func (c *Client) handshake(ws *websocket.Conn) (*wire.HelloAck, [][]byte, error) {
	b, err := c.helloFrame(c.cfg.Now())
	if err != nil {
		return nil, nil, fmt.Errorf("client: building hello: %w", err)
	}
	_ = ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return nil, nil, fmt.Errorf("%w: writing hello: %v", ErrConnectionLost, err)
	}
	return c.awaitHelloAck(ws)
}

// pong answers a ping like gorilla's default handler (WriteControl is safe
// to call concurrently with the write loop).
func (c *Client) pong(ws *websocket.Conn, data string) error {
	err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.cfg.WriteTimeout))
	var ne net.Error
	if errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
		return nil
	}
	return err
}

// writeLoop is the only writer of data frames. It also runs the client
// liveness check of B.1: every PingInterval, terminate if nothing arrived
// for StaleAfter, else ping.
func (c *Client) writeLoop(cn *conn) {
	defer cn.wg.Done()
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-cn.done:
			return
		case b := <-cn.out:
			_ = cn.ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
			if err := cn.ws.WriteMessage(websocket.TextMessage, b); err != nil {
				cn.shutdown(fmt.Errorf("%w: write: %v", ErrConnectionLost, err))
				return
			}
		case <-t.C:
			if time.Since(time.Unix(0, cn.lastRecv.Load())) > c.cfg.StaleAfter {
				cn.shutdown(ErrStale)
				return
			}
			if err := cn.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout)); err != nil {
				cn.shutdown(fmt.Errorf("%w: ping: %v", ErrConnectionLost, err))
				return
			}
		}
	}
}

// readLoop is the only reader; it dispatches every frame, starting with
// those that arrived before hello_ack.
func (c *Client) readLoop(cn *conn, early [][]byte) {
	defer cn.wg.Done()
	for _, b := range early {
		c.dispatch(cn, b)
	}
	for {
		_, b, err := cn.ws.ReadMessage()
		if err != nil {
			cn.shutdown(readErr(err))
			return
		}
		cn.touch()
		c.dispatch(cn, b)
	}
}

func readErr(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: ce.Code, Reason: ce.Text}
	}
	return fmt.Errorf("%w: read: %v", ErrConnectionLost, err)
}

// closeGracefully sends a 1000 close frame and waits briefly for the
// broker's echo before tearing the socket down.
func (c *Client) closeGracefully(cn *conn) {
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err := cn.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeWait)); err == nil {
		t := time.NewTimer(closeWait)
		select {
		case <-cn.done:
		case <-t.C:
		}
		t.Stop()
	}
	cn.shutdown(ErrClosed)
}

// dispatch routes one inbound frame: pushes to Pushes(), responses to the
// pending request they answer, the rest to Errors() or Frames().
func (c *Client) dispatch(cn *conn, b []byte) {
	var env struct {
		Type  string `json:"type"`
		ID    string `json:"id"`
		ReqID string `json:"_reqId"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		c.stats.malformed.Add(1)
		c.cfg.Logger.Warn().Err(err).Msg("unparseable frame from broker")
		return
	}
	switch {
	case env.Type == wire.TypePush:
		c.handlePush(cn, b)
		return
	case env.ReqID != "" && c.resolve(reqKey(env.ReqID), b):
		return
	case env.ID != "" && (env.Type == wire.TypeAck || env.Type == wire.TypeError) && c.resolve(sendKey(env.ID), b):
		return
	case env.Type == wire.TypeError && env.ID != "" && c.resolve(reqKey(env.ID), b):
		return // upstream puts some reqIds in the error's id (B.1)
	case env.ReqID == "" && env.Type != wire.TypeError && c.resolveFIFO(env.Type, b):
		return // B.1: FIFO matching when no _reqId matches
	case env.Type == wire.TypeError:
		var e wire.Error
		_ = json.Unmarshal(b, &e)
		offer(c.errs, e, &c.stats.errorsDropped)
	default:
		offer(c.frames, json.RawMessage(b), &c.stats.framesDropped)
	}
}

// offer delivers v without blocking the read loop; when ch is full v is
// dropped and counted.
func offer[T any](ch chan T, v T, dropped *atomic.Uint64) bool {
	select {
	case ch <- v:
		return true
	default:
		dropped.Add(1)
		return false
	}
}
