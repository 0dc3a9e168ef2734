package broker

// Audit-chain events of the socket code (docs/protocol.md B.8) are recorded
// through Config.Audit (the audit package's writer in cmd/meshd), which
// commits them to the outbox and chains them; a send's message_sent is
// committed by the store with its queue row, not here. audit_query and
// audit_verify are package verbs'.

import (
	"context"

	"github.com/meshd/meshd"
)

// audit records one audit-chain event for meshID (B.8 "Events audited")
// and returns once it is durable (or ctx ends; it is still written).
// actorID "" records a null actor; actorName "" a NULL display name.
func (s *Server) audit(ctx context.Context, meshID, event, actorID, actorName string, payload map[string]any) {
	ev := meshd.AuditEvent{EventType: event, ActorDisplayName: actorName, Payload: payload}
	if actorID != "" {
		ev.ActorMemberID = &actorID
	}
	// Record returns once the event is durable in the outbox; the writer
	// keeps retrying after that, so waiting is only for order (an event
	// lands before this socket's next send). While the database is down
	// that wait would stall the socket's read loop for the whole handler
	// timeout, so it is bounded (the event is still written, in order).
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AuditWait)
	defer cancel()
	s.cfg.Audit.Record(ctx, meshID, ev)
}
