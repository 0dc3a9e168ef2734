package broker

// The audit chain's verbs (docs/protocol.md B.8): audit_query and
// audit_verify. Events are recorded through Config.Audit (the audit
// package's writer in cmd/meshd), which commits them to the outbox and
// chains them; a send's message_sent is committed by the store with its
// queue row, not here.

import (
	"context"
	"encoding/json"
	"time"

	"github.com/meshd/meshd/wire"
)

const (
	// auditQueryMaxLimit caps audit_query's page so one reply stays a
	// bounded frame (state_set payloads may carry values of up to 64 KiB).
	auditQueryMaxLimit = 500
	auditQueryDefault  = 50
)

// audit records one audit-chain event for meshID (B.8 "Events audited")
// and returns once it is durable (or ctx ends; it is still written).
// actorID "" records a null actor; actorName "" a NULL display name.
func (s *Server) audit(ctx context.Context, meshID, event, actorID, actorName string, payload map[string]any) {
	ev := AuditEvent{EventType: event, ActorDisplayName: actorName, Payload: payload}
	if actorID != "" {
		ev.ActorMemberID = &actorID
	}
	// Record returns once the event is durable in the outbox; the writer
	// keeps retrying after that, so waiting is only for order (an event
	// lands before this socket's next send). While the database is down
	// that wait would stall the socket's read loop for the whole handler
	// timeout, so it is bounded (the event is still written, in order).
	ctx, cancel := context.WithTimeout(ctx, auditWait)
	defer cancel()
	s.cfg.Audit.Record(ctx, meshID, ev)
}

// auditWait bounds how long a socket waits for its audit event to commit.
const auditWait = 2 * time.Second

// auditEntryFrame is one entry of audit_result (B.8).
type auditEntryFrame struct {
	ID        int64           `json:"id"`
	EventType string          `json:"eventType"`
	Actor     string          `json:"actor"`
	Payload   json.RawMessage `json:"payload"`
	Hash      string          `json:"hash"`
	CreatedAt string          `json:"createdAt"`
}

// handleAuditQuery answers audit_query {limit?, offset?, eventType?} with
// audit_result, newest first (B.8). Any authenticated member of the mesh
// may ask. limit defaults to 50 and is clamped to [1, 500]; a negative or
// missing offset is 0; fractional numbers are truncated.
func (s *Server) handleAuditQuery(ctx context.Context, c *conn, data []byte, reqID string) error {
	var m struct {
		Limit     *float64 `json:"limit"`
		Offset    *float64 `json:"offset"`
		EventType string   `json:"eventType"`
	}
	if err := decode(data, &m, "audit_query"); err != nil {
		c.sendError("audit_query_error", err.Error(), reqID)
		return nil
	}
	limit, offset := auditPage(m.Limit, m.Offset)
	pres, _, _ := c.snapshot()
	s.cfg.Audit.Sync(ctx, pres.MeshID)
	entries, total, err := s.cfg.Store.QueryAudit(ctx, pres.MeshID, limit, offset, m.EventType)
	if err != nil {
		c.logger().Warn().Err(err).Msg("audit query failed")
		c.sendError("audit_query_error", "audit query failed", reqID)
		return nil
	}
	out := make([]auditEntryFrame, 0, len(entries))
	for _, e := range entries {
		out = append(out, auditEntryFrame{ID: e.ID, EventType: e.EventType, Actor: auditActor(e),
			Payload: e.Payload, Hash: e.Hash, CreatedAt: wire.FormatISOTime(e.CreatedAt)})
	}
	c.send(withReq(map[string]any{"type": "audit_result", "entries": out, "total": total}, reqID))
	return nil
}

func auditPage(limit, offset *float64) (int, int) {
	l, o := auditQueryDefault, 0
	if limit != nil {
		l = int(min(max(*limit, 1), auditQueryMaxLimit))
	}
	if offset != nil && *offset > 0 {
		o = int(min(*offset, 1<<31-1))
	}
	return l, o
}

// auditActor is B.8's actor: display name ?? member id ?? "system".
func auditActor(e AuditEntry) string {
	switch {
	case e.ActorDisplayName != nil:
		return *e.ActorDisplayName
	case e.ActorMemberID != nil:
		return *e.ActorMemberID
	}
	return "system"
}

// handleAuditVerify answers audit_verify with audit_verify_result (B.8).
func (s *Server) handleAuditVerify(ctx context.Context, c *conn, _ []byte, reqID string) error {
	pres, _, _ := c.snapshot()
	s.cfg.Audit.Sync(ctx, pres.MeshID)
	valid, entries, brokenAt, err := s.cfg.Store.VerifyAudit(ctx, pres.MeshID)
	if err != nil {
		c.logger().Warn().Err(err).Msg("audit verify failed")
		c.sendError("audit_verify_error", "audit verify failed", reqID)
		return nil
	}
	res := map[string]any{"type": "audit_verify_result", "valid": valid, "entries": entries}
	if brokenAt != nil {
		res["brokenAt"] = *brokenAt
	}
	c.send(withReq(res, reqID))
	return nil
}
