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
	"github.com/meshd/meshd/claudepath"
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

	// Pushes to a client that never acks are marked delivered once melody
	// has written them to the socket (A.3-4): pending maps a queued frame
	// (by its first byte) to its row id until the sent handler sees it;
	// written ids go to the marker goroutine, which batches MarkDelivered.
	pending    map[*byte]string // guarded by mu
	written    chan string      // bounded; overflow leaves the row claimed (redelivered after the lease)
	markerDone chan struct{}

	acks      atomic.Bool // client acks pushes (A.3-4)
	slow      atomic.Bool // output buffer overflowed: stop pushing
	closing   atomic.Bool // a close frame was queued
	drainCh   chan struct{}
	done      chan struct{} // closed on disconnect
	helloTime *time.Timer
}

func newConn(srv *Server, sess *melody.Session) *conn {
	return &conn{
		srv:        srv,
		sess:       sess,
		socketID:   meshd.NewID(),
		drainCh:    make(chan struct{}, 1),
		done:       make(chan struct{}),
		pending:    map[*byte]string{},
		written:    make(chan string, 256),
		markerDone: make(chan struct{}),
		log:        srv.log,
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

// write enqueues one frame; false when the socket is closed or slow (the
// frame was not queued and must be treated as not delivered).
func (c *conn) write(data []byte) bool {
	if c.slow.Load() || c.closing.Load() {
		return false
	}
	if err := c.sess.Write(data); err != nil {
		return false
	}
	return !c.slow.Load()
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

// wake asks the drain goroutine to claim and push; never blocks, coalesces.
func (c *conn) wake() {
	select {
	case c.drainCh <- struct{}{}:
	default:
	}
}

// drainLoop is the only goroutine that claims rows for this connection, so
// pushes leave in FIFO order (B.5).
func (c *conn) drainLoop() {
	for {
		select {
		case <-c.done:
			return
		case <-c.drainCh:
		}
		c.drain()
	}
}

const claimBatch = 256

// drain claims everything this connection may receive now and pushes it.
// Rows of a client that never acks are marked delivered once their push is
// queued on the socket (A.3-4); an acking client keeps the 30 s lease and
// gets a redelivery if it never acks (A.3-5).
func (c *conn) drain() {
	pres, member, ok := c.snapshot()
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := c.srv.cfg.Store
	inferred := meshd.StatusIdle // a remote broker has no transcripts (B.6.3)
	if dir := c.srv.cfg.JSONLDir; dir != "" {
		if st, err := claudepath.StatusForCWD(dir, pres.CWD); err == nil {
			inferred = st
		} else {
			c.logger().Debug().Err(err).Msg("jsonl status inference")
		}
	}
	status, err := st.RefreshStatus(ctx, pres.ID, c.srv.cfg.HookFreshWindow, inferred)
	if err != nil {
		c.logger().Warn().Err(err).Msg("refresh status before drain")
		status = pres.Status
	}
	req := meshd.ClaimRequest{
		MeshID: pres.MeshID, ClaimerPresenceID: c.socketID, // claim id = socket: released when it closes
		MemberPubkey: member.Pubkey, SessionPubkey: pres.SessionPubkey,
		Groups: groupNames(pres.Groups), Priorities: meshd.Deliverable(status),
		Lease: c.srv.cfg.ClaimLease, Limit: claimBatch,
	}
	for {
		rows, err := st.Claim(ctx, req)
		if err != nil {
			c.logger().Warn().Err(err).Msg("claim")
			return
		}
		written := c.pushRows(rows)
		if len(written) < len(rows) || len(rows) < claimBatch {
			return
		}
	}
}

// pushRows writes drained rows as B.4.3 pushes (plus A.3-13 sender fields)
// and returns the ids that were queued on the socket.
func (c *conn) pushRows(rows []meshd.Delivery) []string {
	written := make([]string, 0, len(rows))
	for _, d := range rows {
		p := wire.Push{
			Type: wire.TypePush, MessageID: d.ID, MeshID: d.MeshID,
			SenderPubkey: d.SenderPubkey, SenderMemberPubkey: d.SenderMemberPubkey,
			SenderMemberID: d.SenderMemberID, SenderName: d.SenderName,
			Priority: string(d.Priority), Nonce: d.Nonce, Ciphertext: d.Ciphertext,
			CreatedAt: isoTime(d.CreatedAt), ClientMessageID: d.ClientMessageID,
			RequestFingerprint: d.RequestFingerprint,
		}
		if !c.sendPush(p, d.ID) {
			c.srv.met.pushDropped.WithLabelValues(dropReason(c)).Inc()
			break
		}
		c.srv.met.messagesRouted.WithLabelValues(string(d.Priority)).Inc()
		written = append(written, d.ID)
	}
	return written
}

// sendPush queues a drained push; for a client that does not ack, its row
// id is remembered until the frame is written (see onSent).
func (c *conn) sendPush(p wire.Push, id string) bool {
	data, err := json.Marshal(p)
	if err != nil || len(data) == 0 {
		return false
	}
	track := !c.acks.Load()
	if track {
		c.mu.Lock()
		c.pending[&data[0]] = id
		c.mu.Unlock()
	}
	if c.write(data) {
		return true
	}
	if track {
		c.mu.Lock()
		delete(c.pending, &data[0])
		c.mu.Unlock()
	}
	return false
}

// onSent runs on melody's write pump after a text frame was written.
func (c *conn) onSent(msg []byte) {
	if len(msg) == 0 {
		return
	}
	c.mu.Lock()
	id, ok := c.pending[&msg[0]]
	delete(c.pending, &msg[0])
	c.mu.Unlock()
	if !ok {
		return
	}
	select {
	case c.written <- id:
	default:
		c.srv.met.pushDropped.WithLabelValues("mark_overflow").Inc()
	}
}

// markerLoop batches the ids of written pushes into MarkDelivered calls;
// on close it flushes what is left, then signals markerDone.
func (c *conn) markerLoop() {
	defer close(c.markerDone)
	batch := make([]string, 0, 256)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := c.srv.cfg.Store.MarkDelivered(ctx, batch); err != nil {
			c.logger().Warn().Err(err).Msg("mark delivered")
		}
		cancel()
		batch = batch[:0]
	}
	for {
		select {
		case id := <-c.written:
			batch = append(batch, id)
			for len(batch) < cap(batch) {
				select {
				case id := <-c.written:
					batch = append(batch, id)
					continue
				default:
				}
				break
			}
			flush()
		case <-c.done:
			for {
				select {
				case id := <-c.written:
					batch = append(batch, id)
					continue
				default:
				}
				break
			}
			flush()
			return
		}
	}
}

func dropReason(c *conn) string {
	if c.slow.Load() {
		return "slow_consumer"
	}
	return "closed"
}

func groupNames(gs []meshd.Group) []string {
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		out = append(out, g.Name)
	}
	return out
}

// isoTime renders t like JS Date.toISOString().
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
