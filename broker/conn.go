package broker

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"github.com/olahol/melody"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// conn is one WebSocket on this replica. Only melody's write pump writes to
// the socket (STYLE #7); everything else enqueues through write.
type conn struct {
	srv      *Server         // immutable
	sess     *melody.Session // immutable
	socketID string          // immutable: presence.socket_id while we own it

	// Set once by the read loop when the handshake succeeds; read by others
	// only after authed is true (the store happens-before via mu).
	mu       sync.Mutex
	authed   bool
	pres     meshd.Presence // guarded by mu (groups/status change later)
	member   meshd.Member   // guarded by mu
	mesh     meshd.Mesh     // guarded by mu
	log      zerolog.Logger // guarded by mu
	releases []func()       // fan-out interest; guarded by mu
	closed   bool           // guarded by mu: disconnect handled
	// helloBusy: a hello frame arrived and is waiting for admission or
	// being handled; helloLate: HelloTimeout passed meanwhile. Guarded by
	// mu. A.3-9 times the hello's arrival, not our work on it.
	helloBusy, helloLate bool
	// afterHello is the part of a successful hello that waits without
	// using the database: its audit event's commit. attach sets it and
	// paceHello runs it once the hello's admission slot is given back; both
	// run on the socket's read goroutine.
	afterHello func()

	// ctx lives as long as the socket: cancelled, with the cause, when it
	// closes, so a drain in flight stops at once.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// Pushes to a client that never acks are marked delivered once melody
	// has written them to the socket (A.3-4). wmu makes "record the frame,
	// queue it" one step, so wrote lists queued text frames in exactly the
	// order melody's write pump sends them; the sent handler pops one entry
	// per frame and hands tracked row ids to the marker goroutine, which
	// batches MarkDelivered.
	wmu   sync.Mutex
	wrote writeRecord
	// marks are written rows not yet marked delivered (guarded by
	// marksMu, bounded by the write record); marker flushes them.
	marksMu sync.Mutex
	marks   []string
	marker  runner
	// drainer claims and pushes; one run at a time keeps pushes FIFO (B.5).
	drainer runner
	// credit is the flow control of an acking client (A.3-5): the rows
	// pushed and not yet client_acked, at most Config.PushWindow.
	credit credit

	// sendSlots bounds this socket's sends waiting for the group commit.
	sendSlots chan struct{}

	// pendingAcks counts client_acks posted to the ack batch and not yet
	// committed; the close path waits for them.
	pendingAcks sync.WaitGroup

	acks      atomic.Bool   // client acks pushes (A.3-4)
	slow      atomic.Bool   // output buffer overflowed: stop pushing
	closing   atomic.Bool   // a close frame was queued
	done      chan struct{} // closed on disconnect
	helloTime *time.Timer
}

func newConn(srv *Server, sess *melody.Session) *conn {
	ctx, cancel := context.WithCancelCause(srv.ctx)
	return &conn{
		srv:       srv,
		sess:      sess,
		socketID:  meshd.NewID(),
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		sendSlots: make(chan struct{}, sendPipeline),
		log:       srv.log,
	}
}

// snapshot returns the authenticated identity, or ok=false before hello.
func (c *conn) snapshot() (p meshd.Presence, m meshd.Member, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pres, c.member, c.authed
}

func (c *conn) logger() *zerolog.Logger {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.log
	return &l
}

// write enqueues one untracked frame; false when the socket is closed or
// slow (the frame was not queued and must be treated as not delivered).
func (c *conn) write(data []byte) bool { return c.writeFrame(data, "") }

// writeFrame records the frame (with the row id of a tracked push, else
// "") and queues it on melody's bounded output. melody reports a full
// buffer through the error handler, synchronously, which marks the socket
// slow; the record entry is then taken back, as the frame was never queued.
func (c *conn) writeFrame(data []byte, id string) bool {
	if c.slow.Load() || c.closing.Load() {
		return false
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wrote.push(id)
	if err := c.sess.Write(data); err != nil || c.slow.Load() {
		c.wrote.unpush()
		return false
	}
	return true
}

// writeRecord is a FIFO of the text frames queued on the socket and not yet
// written: "" for an untracked frame, the row id for a tracked push.
// Guarded by its own mutex (pushed under conn.wmu, popped by the write pump).
type writeRecord struct {
	mu   sync.Mutex
	ids  []string
	head int
}

func (r *writeRecord) push(id string) {
	r.mu.Lock()
	r.ids = append(r.ids, id)
	r.mu.Unlock()
}

// unpush removes the newest entry (its frame was not queued).
func (r *writeRecord) unpush() {
	r.mu.Lock()
	if len(r.ids) > r.head {
		r.ids = r.ids[:len(r.ids)-1]
	}
	r.mu.Unlock()
}

// pop removes the oldest entry.
func (r *writeRecord) pop() (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.head == len(r.ids) {
		return "", false
	}
	id := r.ids[r.head]
	r.head++
	if r.head == len(r.ids) { // empty: reuse the array from the start
		r.ids, r.head = r.ids[:0], 0
	} else if r.head > 1024 && r.head*2 > len(r.ids) {
		r.ids, r.head = append(r.ids[:0], r.ids[r.head:]...), 0
	}
	return id, true
}

// len reports the entries not yet written (tests).
func (r *writeRecord) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ids) - r.head
}

func (c *conn) send(frame any) bool {
	data, err := json.Marshal(frame)
	if err != nil {
		c.logger().Error().Err(err).Msg("marshal frame")
		return false
	}
	return c.write(data)
}

func (c *conn) sendError(code, message, reqID string) {
	c.send(wire.Error{Type: wire.TypeError, Code: code, Message: message, ReqID: reqID})
}

// close queues a close frame for reason. Safe to call more than once.
func (c *conn) close(r wire.Reason, text string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	if text == "" {
		text = r.CloseText()
	}
	c.srv.met.closes.WithLabelValues(r.Metric()).Inc()
	_ = c.sess.CloseWithMsg(melody.FormatCloseMessage(r.CloseCode(), text))
}

// reject sends the handshake's error frame, closes with its code and counts
// it (B.2/B.3: every rejection is an error frame, a close and a metric).
func (c *conn) reject(r wire.Reason, label string) {
	c.srv.met.connectionsRejected.WithLabelValues(r.Metric()).Inc()
	c.logger().Info().Str("reason", r.Metric()).Msg("hello rejected")
	c.send(wire.Error{Type: wire.TypeError, Code: r.Code(), Message: r.Message(label)})
	c.close(r, "")
}

func groupNames(gs []meshd.Group) []string {
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		out = append(out, g.Name)
	}
	return out
}
