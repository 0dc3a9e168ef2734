package broker

import (
	"context"

	"github.com/meshd/meshd"
)

// AuditEvent is the root package's audit-chain event (docs/protocol.md B.8).
type AuditEvent = meshd.AuditEvent

// Auditor records audit-chain events (B.8); the audit package's Writer.
type Auditor interface {
	// Record makes ev durable for meshID's chain, returning once it is (or
	// when ctx ends; it is still written). It never fails the caller.
	Record(ctx context.Context, meshID string, ev AuditEvent)
	// Sync waits, briefly, until meshID's chain holds the events recorded
	// on this replica before the call and the sends committed before it.
	Sync(ctx context.Context, meshID string)
}
