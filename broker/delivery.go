package broker

// The road of a message, top to bottom (docs/architecture.md "How a message
// moves"):
//
//	send ─► route ─► enqueue (+ message_sent to the audit outbox) ─► ack ─► announce (wake-up or mesh publish)
//	wake-up ─► drain: claim ─► push ─► written ─► delivered (no client_ack)
//	                                   └─► client_ack ─► delivered
//	re-drain (every RedrainInterval): claimable rows ─► wake the local sockets they address
//
// Direct rows live in the queue until delivered; multicast rows are stored
// already delivered and travel once over the mesh topic (B.4.3: offline
// peers never get a broadcast later). The scheduler enters the road at
// route, as the member who scheduled (schedule.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/claudepath"
	"github.com/meshd/meshd/wire"
)

// Ack error texts of B.4.1 (clients match on their prefixes).
const (
	errNoRecipient = "no connected peer for target (not online, or targetSpec is your own key without another session)"
	errDMBlocked   = "blocked by recipient grants (sender lacks dm capability)"
	errTopics      = "unsupported_target: topics are not supported" // scheduled posts; sends without collab
)

// sender is who a message is from: a member, and the session key it sent
// with ("" for control-plane connections and scheduled occurrences).
type sender struct {
	member        meshd.Member
	sessionPubkey string
	name          string // display name put on pushes and audit entries
}

// routingPubkey is the senderPubkey of a push (B.4.3).
func (f sender) routingPubkey() string {
	if f.sessionPubkey != "" {
		return f.sessionPubkey
	}
	return f.member.Pubkey
}

// refusal is why route delivers nothing: the ack error text, the
// messages_rejected reason ("" when only dropped_by_grant counts it).
type refusal struct {
	text, reason string
}

// route decides where target goes for from (B.4.1 with A.3-6 and B.7): a
// multicast, or one direct recipient whose grants allow dm. A refusal is the
// sender's mistake or the recipient's choice; an error is ours. Sends take
// it in two halves: routeSpec on the read loop, the recipient lookup in the
// group commit (runEnqueues), so no read loop waits for a pool connection.
func (s *Server) route(ctx context.Context, meshID string, from sender, target string) (multicast bool, no *refusal, err error) {
	multicast, no = s.routeSpec(from, target)
	if multicast || no != nil {
		return multicast, no, nil
	}
	rcpt, err := s.cfg.Store.DirectRecipient(ctx, meshID, target)
	if errors.Is(err, meshd.ErrNotFound) {
		return false, s.admitDirect(nil, from), nil
	}
	if err != nil {
		return false, nil, fmt.Errorf("recipient lookup: %w", err)
	}
	return false, s.admitDirect(&rcpt, from), nil
}

// routeSpec is the part of route the target alone decides, with no
// database: a multicast, a refusal, or (false, nil) for a direct target
// whose recipient is still to be looked up.
func (s *Server) routeSpec(from sender, target string) (multicast bool, no *refusal) {
	switch {
	case strings.HasPrefix(target, "#"):
		return false, &refusal{errTopics, ""}
	case badGroupTarget(target):
		s.met.messagesRejected.WithLabelValues("invalid_target").Inc()
		return false, &refusal{errInvalidTarget, "invalid_target"}
	case meshd.IsMulticast(target):
		return true, nil
	case target == from.sessionPubkey && from.sessionPubkey != "":
		s.met.messagesRejected.WithLabelValues("no_recipient").Inc()
		return false, &refusal{errNoRecipient, "no_recipient"}
	}
	return false, nil
}

// admitDirect is the rest of route once the direct target's recipient is
// known (nil: there is none): the refusal, or nil when its grants allow dm.
func (s *Server) admitDirect(rcpt *meshd.Member, from sender) *refusal {
	if rcpt == nil {
		s.met.messagesRejected.WithLabelValues("no_recipient").Inc()
		return &refusal{errNoRecipient, "no_recipient"}
	}
	if !rcpt.Grants.Allows(from.member.Pubkey, from.sessionPubkey, "dm") {
		s.met.droppedByGrant.WithLabelValues("dm").Inc()
		return &refusal{errDMBlocked, ""}
	}
	return nil
}

// handleSend implements B.4.1: rate limit, size, route, enqueue, ack, then
// announce. The ack means the row is committed; a row that cannot be
// committed gets its own ack {queued:false, error:"unavailable: …"} so a
// client without _reqId still knows which send failed.
func (s *Server) handleSend(ctx context.Context, c *conn, data []byte, _ string) error {
	var m wire.Send
	if err := json.Unmarshal(data, &m); err != nil {
		return invalid("invalid send: %v", err)
	}
	if err := validateSend(&m); err != nil {
		return err
	}
	pres, member, _ := c.snapshot()
	nack := func(reason, text string) error {
		if reason != "" {
			s.met.messagesRejected.WithLabelValues(reason).Inc()
		}
		c.send(wire.Ack{Type: wire.TypeAck, ID: m.ID, Queued: false, Error: text})
		return nil
	}
	if !s.sendRL.Take(member.ID, s.cfg.Now()) {
		// Upstream's text with the configured numbers (B.4.1 step 1).
		return nack("rate_limit", fmt.Sprintf("rate_limit: max %g msg/min (burst %g) — slow down", s.cfg.SendPerMinute, s.cfg.SendBurst))
	}
	// B.4.1 step 2: JS string lengths (UTF-16 code units).
	if n := wire.JSLen(*m.Ciphertext) + wire.JSLen(*m.Nonce) + wire.JSLen(m.TargetSpec); n > s.cfg.MaxMessageBytes {
		return nack("too_large", fmt.Sprintf("payload too large: %d bytes > MAX_MESSAGE_BYTES=%d", n, s.cfg.MaxMessageBytes))
	}
	from := sender{member: member, sessionPubkey: pres.SessionPubkey, name: pres.DisplayName}
	if strings.HasPrefix(m.TargetSpec, "#") && s.collab != nil {
		return s.sendTopic(ctx, c, &m, from, nack) // topics.go
	}
	multicast, no := s.routeSpec(from, m.TargetSpec)
	if no != nil {
		return nack("", no.text)
	}
	q := &meshd.QueuedMessage{
		MeshID: pres.MeshID, SenderMemberID: member.ID, SenderSessionPubkey: pres.SessionPubkey,
		TargetSpec: m.TargetSpec, Priority: meshd.Priority(m.Priority), Nonce: *m.Nonce,
		Ciphertext: *m.Ciphertext, ClientMessageID: m.ClientMessageID, RequestFingerprint: m.RequestFingerprint,
		SenderName: from.name, ReplyToID: m.ReplyToID,
	}
	// The row joins the group commit and the read loop moves on, so this
	// socket's client_acks are not held behind its sends; the batch looks
	// up the direct recipients of all its sends in one statement, and the
	// ack (and the announce) follow the commit — or the refusal, the same
	// one route gives. At most sendPipeline sends of one socket wait at
	// once: the next one blocks the read loop (TCP backpressure).
	c.sendSlots <- struct{}{}
	it := &enqueueItem{q: q, multicast: multicast, from: &from}
	s.enqueues.post(ctx, it, func(err error) {
		<-c.sendSlots
		if err == nil && it.no != nil {
			nack("", it.no.text)
			return
		}
		if err == nil {
			err = it.err
		}
		if err != nil {
			id := s.logInternal(c, err, "send")
			nack("unavailable", "unavailable: the message could not be stored; retry (error id "+id+")")
			return
		}
		c.send(wire.Ack{Type: wire.TypeAck, ID: m.ID, MessageID: q.ID, Queued: true})
		s.announce(s.ctx, q, from, multicast, announceOpts{})
	})
	return nil
}

// sendPipeline bounds one socket's sends waiting for the group commit.
const sendPipeline = 64

func validateSend(m *wire.Send) error {
	switch {
	case m.TargetSpec == "":
		return invalid("send: targetSpec required")
	case m.Nonce == nil || m.Ciphertext == nil:
		return invalid("send: nonce and ciphertext required")
	}
	if m.Priority == "" {
		m.Priority = string(meshd.PriorityNext)
	}
	if !meshd.Priority(m.Priority).Valid() {
		return invalid("send: priority must be now, next or low (got %q)", truncate(m.Priority, 16))
	}
	if len(m.ReplyToID) > maxReplyToID {
		return invalid("send: replyToId longer than %d bytes", maxReplyToID)
	}
	return nil
}

// maxReplyToID bounds a send's replyToId, a message id (32 characters)
// that the queue row keeps and every push repeats.
const maxReplyToID = 128

// enqueueItem is one send waiting for the group commit.
type enqueueItem struct {
	q         *meshd.QueuedMessage
	multicast bool
	from      *sender  // a socket's direct send: its recipient is looked up by the batch; nil: already routed
	no        *refusal // the lookup refused it: nothing stored
	err       error    // this row's own failure when the batch had to be split
}

// runEnqueues resolves the direct recipients of the batch's sends in one
// statement (route's rules: admitDirect), then inserts the admitted rows in
// one statement. Rows get ids in batch order from a clock that never
// repeats or goes back, so FIFO by (created_at, id) holds within the batch
// (one statement: one now()). A batch the database refuses (a sender
// deleted mid-send, say) is retried row by row so one bad row fails only
// its own send.
func (s *Server) runEnqueues(ctx context.Context, items []*enqueueItem) error {
	if err := s.lookupRecipients(ctx, items); err != nil {
		return err
	}
	admitted := items[:0:0]
	for _, it := range items {
		if it.no == nil {
			admitted = append(admitted, it)
		}
	}
	if len(admitted) == 0 {
		return nil
	}
	qs, dl := make([]*meshd.QueuedMessage, len(admitted)), make([]bool, len(admitted))
	for i, it := range admitted {
		if it.q.ID == "" {
			it.q.ID = s.ids.next()
		}
		qs[i], dl[i] = it.q, it.multicast
	}
	err := s.cfg.Store.EnqueueBatch(ctx, qs, dl)
	if err == nil || len(admitted) == 1 || ctx.Err() != nil {
		return err
	}
	for _, it := range admitted {
		it.err = s.cfg.Store.Enqueue(ctx, it.q, it.multicast)
	}
	return nil
}

// lookupRecipients sets no on every direct send of items whose target has
// no recipient or whose recipient's grants refuse the sender's dm.
func (s *Server) lookupRecipients(ctx context.Context, items []*enqueueItem) error {
	var direct []*enqueueItem
	var meshes, targets []string
	for _, it := range items {
		if it.from != nil && !it.multicast {
			direct = append(direct, it)
			meshes, targets = append(meshes, it.q.MeshID), append(targets, it.q.TargetSpec)
		}
	}
	if len(direct) == 0 {
		return nil
	}
	rcpts, err := s.cfg.Store.DirectRecipients(ctx, meshes, targets)
	if err != nil {
		return fmt.Errorf("recipient lookup: %w", err)
	}
	for i, it := range direct {
		it.no = s.admitDirect(rcpts[i], *it.from)
	}
	return nil
}

// claimItem is one drain's claim waiting for the claim batch.
type claimItem struct {
	req  meshd.ClaimRequest
	rows []meshd.Delivery // the rows claimed for req, FIFO
}

// runClaims claims for every drain of the batch in one statement (each
// drain's rows are still read only through its own targets, FIFO).
func (s *Server) runClaims(ctx context.Context, items []*claimItem) error {
	reqs := make([]meshd.ClaimRequest, len(items))
	for i, it := range items {
		reqs[i] = it.req
	}
	out, err := s.cfg.Store.ClaimBatch(ctx, reqs)
	if err != nil {
		return err
	}
	for i, it := range items {
		it.rows = out[i]
	}
	return nil
}

// runAcks applies client_acks of every connection in one statement. An
// ack is idempotent, so a failed batch (a statement that timed out on a
// saturated pool, a connection lost) is tried again a few times before its
// rows are left to the claim lease — which would re-push them.
func (s *Server) runAcks(ctx context.Context, acks []meshd.AckByID) error {
	var err error
	for attempt := range ackAttempts {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
		_, err = s.cfg.Store.ClientAckBatch(actx, acks)
		cancel()
		if err == nil || s.ctx.Err() != nil {
			break
		}
		s.log.Warn().Err(err).Int("acks", len(acks)).Int("attempt", attempt+1).Msg("client_ack batch failed")
	}
	if err != nil {
		s.log.Error().Err(err).Int("acks", len(acks)).Msg("client_ack batch given up; its rows are redelivered after the claim lease")
	}
	return err
}

// ackAttempts bounds the tries of one ack batch.
const ackAttempts = 3

// runDelivered marks the written pushes of non-acking clients (A.3-4),
// gathered from every connection, in one statement.
func (s *Server) runDelivered(ctx context.Context, batches [][]string) error {
	var ids []string
	for _, b := range batches {
		ids = append(ids, b...)
	}
	return s.cfg.Store.MarkDelivered(ctx, ids)
}

func (s *Server) newBatchers() {
	sizes := func(kind string) func(int) {
		h := s.met.batchSize.WithLabelValues(kind)
		return func(n int) { h.Observe(float64(n)) }
	}
	s.enqueues = newBatcher(enqueueBatchMax, s.runEnqueues, sizes("enqueue"))
	s.acks = newBatcher(ackBatchMax, s.runAcks, sizes("ack"))
	s.delivered = newBatcher(64, s.runDelivered, sizes("delivered"))
	// No push waits for these commits (an ack frees the window in memory,
	// credit.give; a re-claim meanwhile skips the row, credit.settling), so
	// at a steady trickle they gather for a moment instead of costing a
	// statement each.
	s.acks.linger, s.delivered.linger = ackLinger, ackLinger
	s.claims = newBatcher(claimBatchMax, s.runClaims, sizes("claim"))
}

// Batch bounds: large enough that a busy replica needs few statements, small
// enough that one statement stays a few milliseconds.
const (
	enqueueBatchMax = 256
	ackBatchMax     = 1024
	claimBatchMax   = 64 // drains (sockets) per claim statement
	claimWorkers    = 4  // claim statements in flight per replica
	ackLinger       = 10 * time.Millisecond
)

type announceOpts struct {
	subtype string // "reminder" for scheduled multicasts (A.3-13)
}

// announce runs after the row (and its message_sent audit event) committed:
// the wake-up of whichever replica holds a direct recipient, or the single
// mesh-topic publish of a multicast. A lost wake-up only delays delivery
// until the re-drain (NATS is not the source of truth).
func (s *Server) announce(ctx context.Context, q *meshd.QueuedMessage, from sender, multicast bool, o announceOpts) {
	if !multicast {
		if err := s.cfg.Fanout.Publish(ctx, meshd.PeerTopic(q.MeshID, q.TargetSpec), nil); err != nil {
			s.log.Warn().Err(err).Str("mesh_id", q.MeshID).Msg("publish wake-up")
		}
		return
	}
	p := pushOf(meshd.Delivery{
		ID: q.ID, MeshID: q.MeshID, SenderPubkey: from.routingPubkey(), SenderMemberID: from.member.ID,
		SenderMemberPubkey: from.member.Pubkey, SenderName: from.name, Priority: q.Priority,
		Nonce: q.Nonce, Ciphertext: q.Ciphertext, CreatedAt: q.CreatedAt, ReplyToID: q.ReplyToID,
	})
	p.Subtype = o.subtype
	push, err := json.Marshal(p)
	if err == nil {
		err = s.publishMesh(ctx, q.MeshID, meshd.MeshEvent{
			Kind: meshd.MeshEventBroadcast, Target: q.TargetSpec, Push: push, Priority: p.Priority, SenderMemberID: from.member.ID,
			SenderMemberPubkey: from.member.Pubkey, SenderSessionPubkey: from.sessionPubkey,
		})
	}
	if err != nil {
		s.log.Warn().Err(err).Str("mesh_id", q.MeshID).Msg("publish multicast")
	}
}

// pushOf is the one constructor of a message push (B.4.3 plus the A.3-13
// sender fields); system pushes are wire.SystemPush.
func pushOf(d meshd.Delivery) *wire.Push {
	return &wire.Push{
		Type: wire.TypePush, MessageID: d.ID, MeshID: d.MeshID,
		SenderPubkey: d.SenderPubkey, SenderMemberPubkey: d.SenderMemberPubkey,
		SenderMemberID: d.SenderMemberID, SenderName: d.SenderName,
		Priority: string(d.Priority), Nonce: d.Nonce, Ciphertext: d.Ciphertext,
		CreatedAt: isoTime(d.CreatedAt), ClientMessageID: d.ClientMessageID,
		RequestFingerprint: d.RequestFingerprint, ReplyToID: d.ReplyToID, Topic: d.Topic, BodyVersion: d.BodyVersion,
	}
}

// isoTime renders t like JS Date.toISOString().
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// wake asks for a drain; never blocks, coalesces: a wake during a drain
// makes it run once more.
func (c *conn) wake() { c.drainer.kick(c.drain) }

const claimBatch = 256

// drain claims everything this connection may receive now and pushes it.
// Rows of a client that never acks are marked delivered once their push is
// written to the socket (A.3-4); an acking client keeps the claim lease and
// gets a redelivery if it never acks (A.3-5).
func (c *conn) drain() {
	pres, member, ok := c.snapshot()
	if !ok {
		return
	}
	wait, cancel := context.WithTimeout(c.srv.ctx, 30*time.Second)
	defer cancel()
	req := c.claimRequest(pres, member)
	req.Priorities, req.Lease = meshd.Deliverable(pres.Status), c.srv.cfg.ClaimLease
	// The status gate (B.4.2) is read by the claim itself, after the JSONL
	// fallback (B.6.3), in one round trip.
	req.StatusPresenceID = pres.ID
	req.Refresh = &meshd.StatusRefresh{Inferred: c.inferredStatus(pres), FreshWindow: c.srv.cfg.HookFreshWindow}
	for {
		if req.Limit = c.claimLimit(); req.Limit == 0 {
			return // the window is full: the next ack wakes us
		}
		// The claim joins the replica's claim batch. The wait is not cut
		// short when the socket closes (only when the server stops): close
		// waits for this drain, so the rows its batch claims for the socket
		// are released after it.
		it := &claimItem{req: req}
		if err := c.srv.claims.do(wait, it); err != nil {
			if c.ctx.Err() == nil {
				c.logger().Warn().Err(err).Msg("claim")
			}
			return
		}
		rows := it.rows
		if n := c.pushRows(rows); n < len(rows) || len(rows) < req.Limit {
			return
		}
	}
}

// claimRequest names this socket's claims: its mesh and targets, the
// socket id as claim id (released when it closes).
func (c *conn) claimRequest(pres meshd.Presence, member meshd.Member) meshd.ClaimRequest {
	return meshd.ClaimRequest{
		MeshID: pres.MeshID, ClaimerPresenceID: c.socketID,
		MemberPubkey: member.Pubkey, SessionPubkey: pres.SessionPubkey, Groups: groupNames(pres.Groups),
	}
}

// claimLimit is how many rows the next claim may take: a batch, or for an
// acking client what its window has left (0 when it is full).
func (c *conn) claimLimit() int {
	if !c.acks.Load() {
		return claimBatch
	}
	return min(claimBatch, c.credit.free(c.srv.cfg.PushWindow, c.srv.cfg.Now()))
}

// inferredStatus is what the JSONL fallback would set (B.6.3): idle on a
// remote broker, else the status inferred from the session's transcript.
func (c *conn) inferredStatus(pres meshd.Presence) meshd.Status {
	dir := c.srv.cfg.JSONLDir
	if dir == "" {
		return meshd.StatusIdle // a remote broker has no transcripts
	}
	st, err := claudepath.StatusForCWD(dir, pres.CWD)
	if err != nil {
		c.logger().Debug().Err(err).Msg("jsonl status inference")
		return meshd.StatusIdle
	}
	return st
}

// pushRows queues drained rows on the socket in order and returns how many
// were queued; the rest stay claimed and are released when the socket
// closes.
func (c *conn) pushRows(rows []meshd.Delivery) int {
	now := c.srv.cfg.Now()
	for i, d := range rows {
		if c.acks.Load() && c.credit.progressing(d.ID, now, c.srv.cfg.ClaimLease) {
			// Re-claimed after its lease while still in flight to a client
			// that keeps acking: it is queued behind a slow reader, and a
			// second push would only be a duplicate (issue 11). A client
			// that stopped acking does get it again (A.3-5).
			continue
		}
		data, err := json.Marshal(pushOf(d))
		if err != nil || !c.writeTracked(data, d.ID) {
			c.srv.met.pushDropped.WithLabelValues(dropReason(c)).Inc()
			return i
		}
		if c.acks.Load() {
			c.credit.take(d.ID, d.ClientMessageID)
		}
		c.srv.met.messagesRouted.WithLabelValues(string(d.Priority)).Inc()
	}
	return len(rows)
}

// writeTracked queues a drained push. For a client that does not
// client_ack, the row id rides the connection's write record so the sent
// handler can mark it delivered once the frame is on the wire (A.3-4).
func (c *conn) writeTracked(data []byte, id string) bool {
	if c.acks.Load() {
		id = ""
	}
	return c.writeFrame(data, id)
}

// onWritten runs on melody's write pump after a text frame was written; it
// pops the frame's entry from the write record and, for a tracked push,
// queues its row id for the marker.
func (c *conn) onWritten() {
	id, ok := c.wrote.pop()
	if !ok || id == "" {
		return
	}
	c.marksMu.Lock()
	c.marks = append(c.marks, id)
	c.marksMu.Unlock()
	c.marker.kick(c.flushMarks)
}

// flushMarks marks the written rows delivered, in batches.
func (c *conn) flushMarks() {
	for {
		c.marksMu.Lock()
		batch := c.marks
		c.marks = nil
		c.marksMu.Unlock()
		if len(batch) == 0 {
			return
		}
		c.markDelivered(batch)
	}
}

func (c *conn) markDelivered(batch []string) {
	// Not c.ctx: the final flush runs after the socket closed.
	ctx, cancel := context.WithTimeout(c.srv.ctx, 10*time.Second)
	defer cancel()
	if err := c.srv.delivered.do(ctx, batch); err != nil {
		c.logger().Warn().Err(err).Msg("mark delivered")
	}
}

func dropReason(c *conn) string {
	if c.slow.Load() {
		return "slow_consumer"
	}
	return "closed"
}

// credit tracks an acking client's pushes in flight (guarded by mu).
type credit struct {
	mu       sync.Mutex
	inflight map[string]string // broker message id → client message id
	byClient map[string]string // client message id → broker message id
	fullAt   time.Time         // when the window filled; zero while it has room
	lastAck  time.Time         // when the client last acked a push in flight
	// settling are rows the client acked whose ack has not committed yet
	// (it waits in the replica's ack batch): a re-claim after the lease
	// must not push them again.
	settling map[string]struct{}
}

// settle records that id's ack is waiting for its batch.
func (cr *credit) settle(id string) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.settling == nil {
		cr.settling = map[string]struct{}{}
	}
	cr.settling[id] = struct{}{}
}

// settled records that id's ack batch ended (committed or failed: a failed
// ack leaves the row to the lease, as before).
func (cr *credit) settled(id string) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	delete(cr.settling, id)
}

// progressing reports whether id is already in flight to a client that
// acked something within lease.
func (cr *credit) progressing(id string, now time.Time, lease time.Duration) bool {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if _, ok := cr.settling[id]; ok {
		return true
	}
	_, ok := cr.inflight[id]
	return ok && !cr.lastAck.IsZero() && now.Sub(cr.lastAck) < lease
}

// free returns the room left in a window of size w, noting when it fills.
func (cr *credit) free(w int, now time.Time) int {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	n := max(w-len(cr.inflight), 0)
	if n == 0 && cr.fullAt.IsZero() {
		cr.fullAt = now
	}
	return n
}

// take records a push in flight.
func (cr *credit) take(id, clientID string) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.inflight == nil {
		cr.inflight, cr.byClient = map[string]string{}, map[string]string{}
	}
	cr.inflight[id] = clientID
	if clientID != "" {
		cr.byClient[clientID] = id
	}
}

// give settles an ack; it reports whether the window had been full (the
// drain stopped and must be woken).
func (cr *credit) give(id, clientID string, now time.Time) bool {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if id == "" {
		id = cr.byClient[clientID]
	}
	cid, ok := cr.inflight[id]
	if !ok {
		return false
	}
	cr.lastAck = now
	delete(cr.inflight, id)
	delete(cr.byClient, cid)
	full := !cr.fullAt.IsZero()
	cr.fullAt = time.Time{}
	return full
}

// stalledSince reports when the window filled (zero: it has room).
func (cr *credit) stalledSince() time.Time {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return cr.fullAt
}

// closeStalled closes the acking clients whose window stayed full longer
// than SlowConsumerAfter (slow_consumer, "reconnect"); their close releases
// their claims at once, so the rows wait for them or another socket of the
// same key instead of being re-pushed into a socket that does not read.
func (s *Server) closeStalled() {
	now := s.cfg.Now()
	for _, c := range s.hub.allConns() {
		if at := c.credit.stalledSince(); !at.IsZero() && now.Sub(at) > s.cfg.SlowConsumerAfter {
			c.logger().Warn().Dur("stalled", now.Sub(at)).Int("window", s.cfg.PushWindow).Msg("slow consumer: push window full; closing")
			c.close(wire.ReasonSlowConsumer, "")
		}
	}
}

// handleClientAck marks a pushed row delivered (B.4.4). The first
// client_ack also switches the connection to acking mode (A.3-4).
func (s *Server) handleClientAck(ctx context.Context, c *conn, data []byte, _ string) error {
	var m wire.ClientAck
	if err := json.Unmarshal(data, &m); err != nil {
		return invalid("invalid client_ack: %v", err)
	}
	c.acks.Store(true)
	if m.ClientMessageID == "" && m.BrokerMessageID == "" {
		return nil
	}
	if c.credit.give(m.BrokerMessageID, m.ClientMessageID, s.cfg.Now()) {
		c.wake() // the window had been full
	}
	pres, member, _ := c.snapshot()
	keys := []string{member.Pubkey}
	if pres.SessionPubkey != "" {
		keys = append(keys, pres.SessionPubkey)
	}
	if m.BrokerMessageID == "" {
		if _, err := s.cfg.Store.ClientAck(ctx, pres.MeshID, keys, m.ClientMessageID, ""); err != nil {
			return fmt.Errorf("client_ack: %w", err)
		}
		return nil
	}
	// Acks by broker id join the replica's ack batch without holding the
	// read loop; the close path waits for them (c.pendingAcks) before it
	// releases this socket's claims, so an acked row is never re-pushed.
	c.pendingAcks.Add(1)
	id := m.BrokerMessageID
	c.credit.settle(id)
	s.acks.post(ctx, meshd.AckByID{MeshID: pres.MeshID, ID: id, Keys: keys}, func(error) {
		c.credit.settled(id)
		c.pendingAcks.Done()
	})
	return nil
}

// deliverBroadcast pushes a multicast to this replica's eligible sockets
// (B.4.3): not the sender's member, visible, in the group (hierarchical,
// A.1), and allowed by the recipient's grants — read from Postgres so a
// grant changed on any replica applies at once (A.3-7).
func (s *Server) deliverBroadcast(ctx context.Context, meshID string, msg *meshd.MeshEvent, frame []byte, conns []*conn) {
	type rcpt struct {
		c        *conn
		memberID string
	}
	var rcpts []rcpt
	ids := map[string]struct{}{}
	for _, c := range conns {
		pres, member, ok := c.snapshot()
		if !ok || member.ID == msg.SenderMemberID || !pres.Visible || !meshd.InTarget(pres.Groups, msg.Target) {
			continue
		}
		rcpts = append(rcpts, rcpt{c, member.ID})
		ids[member.ID] = struct{}{}
	}
	if len(rcpts) == 0 {
		return
	}
	memberIDs := make([]string, 0, len(ids))
	for id := range ids {
		memberIDs = append(memberIDs, id)
	}
	grants, err := s.cfg.Store.MemberGrants(ctx, meshID, memberIDs)
	if err != nil {
		s.log.Warn().Err(err).Str("mesh_id", meshID).Msg("broadcast grants lookup failed; dropping")
		s.met.pushDropped.WithLabelValues("closed").Add(float64(len(rcpts)))
		return
	}
	for _, r := range rcpts {
		if !grants[r.memberID].Allows(msg.SenderMemberPubkey, msg.SenderSessionPubkey, "broadcast") {
			s.met.droppedByGrant.WithLabelValues("broadcast").Inc()
			continue
		}
		if r.c.write(frame) {
			s.met.messagesRouted.WithLabelValues(msg.Priority).Inc()
		} else {
			s.met.pushDropped.WithLabelValues(dropReason(r.c)).Inc()
		}
	}
}

// redrainLoop is the safety net under the at-most-once fan-out: every
// RedrainInterval it asks Postgres which targets of the local meshes have
// claimable rows (new, or whose claim lease expired) and wakes the local
// sockets they address. A lost wake-up therefore delays a DM by at most one
// interval and never loses it (A.3-5).
func (s *Server) redrainLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.RedrainInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.redrain(ctx)
		s.closeStalled()
	}
}

func (s *Server) redrain(ctx context.Context) {
	meshes := s.hub.localMeshes()
	if len(meshes) == 0 {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	targets, err := s.cfg.Store.PendingTargets(qctx, meshes)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("re-drain: pending targets")
		}
		return
	}
	want := map[string]map[string]bool{}
	for _, t := range targets {
		if want[t.MeshID] == nil {
			want[t.MeshID] = map[string]bool{}
		}
		want[t.MeshID][t.TargetSpec] = true
	}
	for meshID, specs := range want {
		for _, c := range s.hub.meshConns(meshID) {
			pres, member, ok := c.snapshot()
			if !ok {
				continue
			}
			if specs[member.Pubkey] || (pres.SessionPubkey != "" && specs[pres.SessionPubkey]) || multicastFor(specs, pres.Groups) {
				s.met.redeliveries.Inc()
				c.wake()
			}
		}
	}
}

// multicastFor reports whether a pending multicast target reaches a socket
// in groups (only rows stored undelivered, which broadcasts never are).
func multicastFor(specs map[string]bool, groups []meshd.Group) bool {
	for spec := range specs {
		if meshd.IsMulticast(spec) && meshd.InTarget(groups, spec) {
			return true
		}
	}
	return false
}
