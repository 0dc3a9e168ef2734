package broker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/meshd/meshd"
)

// The broker knows nothing about SQL or NATS subjects: it declares the small
// interfaces it needs here and cmd/meshd wires store.Store and fanout.Bus in
// (checked at compile time there).

// Members looks up meshes, members and grants.
type Members interface {
	// LookupMember returns the non-archived mesh meshID and its member with
	// peer_pubkey = pubkey (exact string). An active row is preferred; when
	// only revoked rows exist one is returned with RevokedAt set. Returns
	// meshd.ErrNotFound when the mesh or the member does not exist.
	LookupMember(ctx context.Context, meshID, pubkey string) (meshd.Mesh, meshd.Member, error)
	// DirectRecipient resolves a direct targetSpec (A.3-6): the active member
	// whose pubkey is target, else the member of a live (not disconnected,
	// possibly grace-leased) presence whose session pubkey is target.
	// meshd.ErrNotFound otherwise.
	DirectRecipient(ctx context.Context, meshID, target string) (meshd.Member, error)
	// DirectRecipients is DirectRecipient for many (mesh, target) pairs in
	// one statement: out[i] answers pair i, nil when it has no recipient.
	DirectRecipients(ctx context.Context, meshIDs, targets []string) ([]*meshd.Member, error)
	// MemberGrants returns peer_grants keyed by member id for the given
	// members of meshID (missing members are absent from the map).
	MemberGrants(ctx context.Context, meshID string, memberIDs []string) (map[string]meshd.Grants, error)
}

// Presences is the shared presence table (B.6.1): one row per connection,
// owned by the node holding its socket.
type Presences interface {
	// CountLive counts presences of meshID that are not disconnected (grace
	// leases included), on every node.
	CountLive(ctx context.Context, meshID string) (int, error)
	// CapacityExempt reports whether Attach could make room in a full
	// mesh for these (unverified) claims: the member is the owner or an
	// admin, has a grace lease, or has a live presence of this session
	// (session pubkey, else session id) to take over (A.3-22).
	CapacityExempt(ctx context.Context, meshID, memberPubkey, sessionPubkey, sessionID string) (bool, error)
	// Attach reattaches or creates the presence for a successful hello, in
	// one transaction serialized per mesh (B.2 steps 4-6, B.3). Matching for
	// reattach: same session pubkey when the request has one; when neither
	// has one, same session id and member pubkey. A reattach sets node,
	// socket, cwd, display name (when non-empty) and session id, clears the
	// lease and bumps last_ping_at. A new presence gets status idle/jsonl,
	// then the newest pending_status for (pid, cwd) within PendingWindow is
	// applied with source hook and marked applied.
	Attach(ctx context.Context, req meshd.AttachRequest) (meshd.AttachResult, error)
	// Detach starts the grace lease of presenceID if socketID still owns it:
	// lease_until = now + grace. Reports whether it did.
	Detach(ctx context.Context, presenceID, socketID string, grace time.Duration) (bool, error)
	// Touch records a pong: last_ping_at = now, if socketID still owns it.
	Touch(ctx context.Context, presenceID, socketID string) error
	// ListPeers returns the live presences of meshID (grace leases
	// included) ordered by connected_at, with MemberPubkey and an effective
	// DisplayName (presence's, else the member's).
	ListPeers(ctx context.Context, meshID string) ([]meshd.Presence, error)
	// ClaimHelloSignature records the first use of a verified handshake
	// signature; fresh is false for a replay within keep (A.3-21).
	ClaimHelloSignature(ctx context.Context, signature string, keep time.Duration) (fresh bool, err error)
}

// Queue is the durable message queue (B.5).
type Queue interface {
	// Enqueue inserts m, setting m.ID (when empty) and m.CreatedAt. When
	// delivered is true the row is inserted already delivered (broadcasts).
	Enqueue(ctx context.Context, m *meshd.QueuedMessage, delivered bool) error
	// Claim atomically claims eligible rows (FOR UPDATE SKIP LOCKED, FIFO by
	// created_at then id) for one connection and returns them in FIFO order.
	Claim(ctx context.Context, req meshd.ClaimRequest) ([]meshd.Delivery, error)
	// ClaimBatch is Claim for several connections in one statement: out[i]
	// are reqs[i]'s rows; a row two of them could take goes to the first.
	ClaimBatch(ctx context.Context, reqs []meshd.ClaimRequest) ([][]meshd.Delivery, error)
	// EnqueueBatch inserts ms in one statement, all or nothing (the group
	// commit of sends); delivered[i] as for Enqueue.
	EnqueueBatch(ctx context.Context, ms []*meshd.QueuedMessage, delivered []bool) error
	// ClientAckBatch applies client_acks naming broker message ids in one
	// statement (B.4.4 rules per ack); returns the rows marked.
	ClientAckBatch(ctx context.Context, acks []meshd.AckByID) (int64, error)
	// MarkDelivered sets delivered_at = now on the given undelivered rows.
	MarkDelivered(ctx context.Context, ids []string) error
	// ReleaseClaims makes the undelivered rows of req's targets claimed by
	// req.ClaimerPresenceID claimable again (their socket closed before
	// writing them).
	ReleaseClaims(ctx context.Context, req meshd.ClaimRequest) (int64, error)
	// ClientAck marks delivered the undelivered rows of meshID with id =
	// brokerID or client_message_id = clientID whose target is one of keys,
	// `*`, `@…` or `#…` (B.4.4). Returns the number of rows.
	ClientAck(ctx context.Context, meshID string, keys []string, clientID, brokerID string) (int64, error)
	// PendingTargets lists the distinct targets of claimable rows (not
	// delivered, unclaimed or claim expired) in the given meshes; the
	// periodic re-drain uses it so no row is stranded by a lost wake-up.
	PendingTargets(ctx context.Context, meshIDs []string) ([]meshd.TargetRef, error)
}

// Fanout carries cross-replica pushes. Topics are logical names chosen by the
// broker ("mesh.<id>", "peer.<mesh>.<pubkey>", "presence.<id>"); the
// implementation maps them to prefixed NATS subjects.
type Fanout interface {
	// Publish sends data to every subscriber of topic on every replica,
	// this one included.
	Publish(ctx context.Context, topic string, data []byte) error
	// Subscribe registers local interest in topic; deliver is called for each
	// message and must not block. release drops the interest; the last
	// release unsubscribes (after a short linger).
	Subscribe(topic string, deliver func(data []byte)) (release func(), err error)
	// SubscribeAll subscribes deliver[i] to topics[i], all or none, and
	// returns once the server confirmed them (one round trip).
	SubscribeAll(topics []string, deliver []func(data []byte)) (release func(), err error)
}

// Migrations reports the newest applied migration (readiness gate).
type Migrations interface {
	LatestApplied(ctx context.Context) (name, sha string, err error)
}

// Pinger reports whether a dependency is reachable (health).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Maintenance is this replica's own upkeep (the cluster-wide upkeep is the
// upkeep job, package jobs).
type Maintenance interface {
	// LeaseNodePresences starts the grace lease of every live presence of
	// nodeID (graceful shutdown of this replica only, A.3-17).
	LeaseNodePresences(ctx context.Context, nodeID string, grace time.Duration) (int64, error)
	// Heartbeat records that nodeID is alive.
	Heartbeat(ctx context.Context, nodeID, addr string) error
	// ArchivedMeshes returns those of meshIDs that are archived or gone.
	ArchivedMeshes(ctx context.Context, meshIDs []string) ([]string, error)
}

// StreamStore holds stream names and one subscription row per (stream,
// presence), so list_streams counts subscribers on every replica. Stream
// data never touches it.
type StreamStore interface {
	// CreateStream inserts stream name of meshID or returns the existing
	// one's id (insert-or-get).
	CreateStream(ctx context.Context, meshID, name, createdBy string) (id string, err error)
	// SubscribeStream records socketID's (holding presenceID) subscription.
	SubscribeStream(ctx context.Context, meshID, name, presenceID, socketID string) error
	// UnsubscribeStream deletes it.
	UnsubscribeStream(ctx context.Context, meshID, name, presenceID, socketID string) error
	// DropSocketStreams deletes every subscription of a closed socket.
	DropSocketStreams(ctx context.Context, presenceID, socketID string) error
	// ListStreams returns the streams of meshID, oldest first, with the
	// number of subscribers whose presence is live and still held by the
	// socket that subscribed.
	ListStreams(ctx context.Context, meshID string) ([]meshd.Stream, error)
}

// PresenceEdits are the presence fields the WS verbs change (B.6.7) and the
// peer_state a member leaves behind (B.6.1).
type PresenceEdits interface {
	SetPresenceSummary(ctx context.Context, presenceID, summary string) error
	SetPresenceVisible(ctx context.Context, presenceID string, visible bool) error
	SetPresenceProfile(ctx context.Context, presenceID string, profile json.RawMessage) error
	SetPresenceGroups(ctx context.Context, presenceID string, groups []meshd.Group) error
	WriteStatus(ctx context.Context, presenceID string, status meshd.Status, source meshd.StatusSource, freshWindow time.Duration) (bool, error)
	LoadPeerState(ctx context.Context, meshID, memberID string) (meshd.PeerState, error)
	SavePeerState(ctx context.Context, presenceID string) error
	// MergePeerStats sets each counter of stats (an object of numbers) in
	// the member's peer_state.cumulative_stats to the larger of the stored
	// and the given value; no row, no change.
	MergePeerStats(ctx context.Context, meshID, memberID string, stats json.RawMessage) error
}

// Auditor records audit-chain events (B.8); the audit package's Writer.
type Auditor interface {
	// Record makes ev durable for meshID's chain, returning once it is (or
	// when ctx ends; it is still written). It never fails the caller.
	Record(ctx context.Context, meshID string, ev meshd.AuditEvent)
	// Sync waits, briefly, until meshID's chain holds the events recorded
	// on this replica before the call and the sends committed before it.
	Sync(ctx context.Context, meshID string)
}
