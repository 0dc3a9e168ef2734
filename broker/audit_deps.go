package broker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/meshd/meshd"
)

// AuditEvent is the root package's audit-chain event (docs/protocol.md B.8).
type AuditEvent = meshd.AuditEvent

// AuditEntry is one audit row as audit_query reports it.
type AuditEntry = struct {
	ID               int64
	EventType        string
	ActorMemberID    *string
	ActorDisplayName *string
	Payload          json.RawMessage
	Hash             string
	CreatedAt        time.Time
}

// Auditor records audit-chain events (B.8); the audit package's Writer.
type Auditor interface {
	// Record makes ev durable for meshID's chain, returning once it is (or
	// when ctx ends; it is still written). It never fails the caller.
	Record(ctx context.Context, meshID string, ev AuditEvent)
	// Sync waits, briefly, until meshID's chain holds the events recorded
	// on this replica before the call and the sends committed before it.
	Sync(ctx context.Context, meshID string)
}

// AuditLog reads the per-mesh hash chain (B.8).
type AuditLog interface {
	// VerifyAudit walks the chain oldest first; brokenAt is the id of the
	// first row whose link or hash does not match.
	VerifyAudit(ctx context.Context, meshID string) (valid bool, entries int, brokenAt *int64, err error)
	// QueryAudit returns a page of the chain newest first and the number of
	// rows matching eventType ("" matches all).
	QueryAudit(ctx context.Context, meshID string, limit, offset int, eventType string) ([]AuditEntry, int, error)
}
