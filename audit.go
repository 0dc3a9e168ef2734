package meshd

import (
	"encoding/json"
	"time"
)

// AuditEvent is one event appended to a mesh's audit chain (docs/protocol.md
// B.8). The socket code records it, the audit package commits it to the
// outbox and moves it into the chain, the store hashes and appends it.
type AuditEvent struct {
	// EventType is peer_joined, peer_left, message_sent, state_set,
	// member_banned or member_unbanned.
	EventType string
	// ActorMemberID is the acting member; nil hashes as the text "null".
	ActorMemberID *string
	// ActorDisplayName is the actor's effective display name; "" is NULL.
	ActorDisplayName string
	// Payload is any JSON value (a map, a json.RawMessage, a struct); it is
	// hashed in its canonical form and stored as exactly that form.
	Payload any
	// CreatedAt is the event time. Zero (the normal case) means the
	// database clock read under the chain lock, never earlier than the
	// chain's tail. Either way it is truncated to milliseconds, the
	// precision the hash renders (B.8), so the stored value is the hashed one.
	CreatedAt time.Time
}

// MeshAuditEvent is an AuditEvent of one mesh on its way through the audit
// outbox (B.8 "Write path").
type MeshAuditEvent struct {
	MeshID string
	AuditEvent
}

// AuditEntry is one row of a mesh's audit chain as audit_query reports it
// (B.8).
type AuditEntry struct {
	ID               int64
	EventType        string
	ActorMemberID    *string
	ActorDisplayName *string
	Payload          json.RawMessage // JSONB text form
	Hash             string
	CreatedAt        time.Time
}

// Actor is B.8's actor of an entry: display name ?? member id ?? "system".
func (e AuditEntry) Actor() string {
	switch {
	case e.ActorDisplayName != nil:
		return *e.ActorDisplayName
	case e.ActorMemberID != nil:
		return *e.ActorMemberID
	}
	return "system"
}
