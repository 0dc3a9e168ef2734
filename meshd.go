// Package meshd holds the domain types shared by the broker, the store and
// the tools: meshes, members, presences, queued messages. It owns no resource
// and does no I/O; broker/, store/, fanout/ and ha/ never import each other
// and meet here instead (see docs/architecture.md).
package meshd

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Status of a presence (docs/protocol.md B.6.1).
type Status string

const (
	StatusIdle    Status = "idle"
	StatusWorking Status = "working"
	StatusDND     Status = "dnd"
)

// Valid reports whether s is one of the three statuses.
func (s Status) Valid() bool { return s == StatusIdle || s == StatusWorking || s == StatusDND }

// StatusSource ranks who reported a status (B.6.2): hook > manual > jsonl.
type StatusSource string

const (
	SourceHook   StatusSource = "hook"
	SourceManual StatusSource = "manual"
	SourceJSONL  StatusSource = "jsonl"
)

// Priority of a message (B.4.2).
type Priority string

const (
	PriorityNow  Priority = "now"
	PriorityNext Priority = "next"
	PriorityLow  Priority = "low"
)

// Valid reports whether p is now, next or low.
func (p Priority) Valid() bool { return p == PriorityNow || p == PriorityNext || p == PriorityLow }

// Deliverable returns the priorities a recipient in status s may receive
// (B.4.2): idle gets everything, working and dnd only "now".
func Deliverable(s Status) []Priority {
	if s == StatusIdle {
		return []Priority{PriorityNow, PriorityNext, PriorityLow}
	}
	return []Priority{PriorityNow}
}

// Presence roles (B.6.1).
const (
	RoleControlPlane = "control-plane"
	RoleSession      = "session"
)

// Group is one entry of a presence's groups (B.2 hello `groups`).
type Group struct {
	Name string `json:"name"`
	Role string `json:"role,omitempty"`
}

// Mesh is a row of the mesh table.
type Mesh struct {
	ID          string
	Slug        string
	Name        string
	OwnerUserID string
	OwnerPubkey string // 64 hex; empty when unset
	ArchivedAt  *time.Time
	// SelfEditable is mesh.self_editable verbatim (the hello_ack
	// meshPolicy); nil when the column is NULL or was not read.
	SelfEditable json.RawMessage
}

// Label is the name shown in the revoked message (B.2 step 4a):
// the mesh name, else its slug, else its id.
func (m Mesh) Label() string {
	switch {
	case m.Name != "":
		return m.Name
	case m.Slug != "":
		return m.Slug
	}
	return m.ID
}

// OwnedBy reports whether member is one of the mesh owner's member rows.
func (m Mesh) OwnedBy(member Member) bool {
	return m.OwnerUserID != "" && m.OwnerUserID == member.UserID
}

// CanModerate is B.6.10's authz: the mesh owner or an admin member may
// kick, disconnect, ban and unban (and, at the connection cap, evict a
// grace lease to make room).
func (m Mesh) CanModerate(member Member) bool {
	return member.Role == "admin" || m.OwnedBy(member)
}

// Grants maps a sender pubkey (hex) to its capabilities (B.7).
type Grants map[string][]string

// Default capabilities when a recipient has no entry for a sender (B.7).
var DefaultCaps = []string{"read", "dm", "broadcast", "state-read"}

// KnownCaps are the capability names of B.7 (only dm and broadcast are
// enforced); set_grants refuses any other.
var KnownCaps = []string{"read", "dm", "broadcast", "state-read", "state-write", "file-read"}

// Allows applies the B.7 lookup: the entry under the sender's member pubkey
// wins; else, when the sender has a session pubkey, the entry under it; else
// the defaults. An empty entry blocks everything.
func (g Grants) Allows(senderMemberPubkey, senderSessionPubkey, capability string) bool {
	caps, ok := g[senderMemberPubkey]
	if !ok && senderSessionPubkey != "" {
		caps, ok = g[senderSessionPubkey]
	}
	if !ok {
		caps = DefaultCaps
	}
	for _, c := range caps {
		if c == capability {
			return true
		}
	}
	return false
}

// Member is a row of the member table.
type Member struct {
	ID            string
	MeshID        string
	UserID        string
	Pubkey        string // peer_pubkey, 64 lowercase hex
	DisplayName   string
	Role          string // "admin" | "member"
	RoleTag       string
	DefaultGroups []Group
	MessageMode   string
	Grants        Grants
	RevokedAt     *time.Time
}

// Presence is one live (or grace-leased) connection of a member (B.6.1). A
// presence belongs to the node that holds its socket; LeaseUntil is set while
// the socket is gone and the presence waits for a reattach.
type Presence struct {
	ID              string
	MeshID          string
	MemberID        string
	MemberPubkey    string
	SessionID       string
	SessionPubkey   string // empty for control-plane (member-key) connections
	DisplayName     string
	PID             int
	CWD             string
	Status          Status
	StatusSource    StatusSource
	StatusUpdatedAt time.Time
	Summary         string
	Groups          []Group
	Role            string
	NodeID          string
	SocketID        string // changes on every (re)attach; stale closes are ignored
	Hostname        string
	PeerType        string
	Channel         string
	Model           string
	Visible         bool
	// Ephemeral is a one-shot control-plane connection that other peers do
	// not see: no peer list, no join/leave events, no lease, no peer_state
	// (A.3-32). Set on attach only; rows read back do not carry it.
	Ephemeral      bool
	Profile        json.RawMessage
	ConnectedAt    time.Time
	LastPingAt     time.Time
	LeaseUntil     *time.Time
	DisconnectedAt *time.Time
}

// RoutingPubkey is the key other peers address this presence by: the session
// pubkey when there is one, else the member pubkey.
func (p *Presence) RoutingPubkey() string {
	if p.SessionPubkey != "" {
		return p.SessionPubkey
	}
	return p.MemberPubkey
}

// QueuedMessage is a row of message_queue (B.5). Nonce and Ciphertext are
// opaque: the broker never decodes them.
type QueuedMessage struct {
	ID                  string
	MeshID              string
	SenderMemberID      string
	SenderSessionPubkey string
	TargetSpec          string
	Priority            Priority
	Nonce               string
	Ciphertext          string
	ClientMessageID     string
	RequestFingerprint  string
	// SenderName is the sender's effective display name, recorded as the
	// actor of the row's message_sent audit event (B.8); not a queue column.
	SenderName string
	// ReplyToID is the send's replyToId; Topic (the topic's name) and
	// BodyVersion are set on the rows of a #topic send (docs/protocol.md
	// C.2.4). All three travel to the recipient's push.
	ReplyToID   string
	Topic       string
	BodyVersion int
	CreatedAt   time.Time
	DeliveredAt *time.Time
}

// Delivery is a claimed queue row ready to be pushed (B.4.3 drained push).
type Delivery struct {
	ID                 string
	MeshID             string
	SenderPubkey       string // COALESCE(sender_session_pubkey, sender member pubkey)
	SenderMemberID     string
	SenderMemberPubkey string
	SenderName         string
	Priority           Priority
	Nonce              string
	Ciphertext         string
	CreatedAt          time.Time
	ClientMessageID    string
	RequestFingerprint string
	ReplyToID          string
	Topic              string // topic name of a #topic post's row
	BodyVersion        int    // a #topic post's body version; 0 otherwise
}

// AttachRequest is what a successful hello asks of the presence table.
type AttachRequest struct {
	// Presence carries the new presence's fields: MeshID, MemberID,
	// MemberPubkey, SessionID, SessionPubkey, DisplayName, PID, CWD, Groups,
	// Role, NodeID, SocketID, Hostname, PeerType, Channel, Model.
	Presence Presence
	// MaxPerMesh caps live presences (grace leases included) of the mesh
	// across all replicas; a new presence beyond it fails with
	// ErrCapacity. Reattaching never fails on capacity.
	MaxPerMesh int
	// MaxPerMember caps live presences (grace leases included) of one
	// member across all replicas (≤ 0: no cap). At the cap the member's
	// oldest grace leases are evicted to make room; when none is left the
	// attach fails with ErrMemberCapacity.
	MaxPerMember int
	// Privileged is true for the mesh owner and admins: at MaxPerMesh the
	// oldest grace lease of the mesh (anyone's) is evicted to make room, so
	// other members' leases never lock them out.
	Privileged bool
	// TakeOverOnline is true for session_hello: a live presence with the same
	// session pubkey is taken over whether or not it is in its grace lease.
	// For hello only a grace-leased presence is reattached.
	TakeOverOnline bool
	// PendingWindow bounds the age of a pending_status row applied to a new
	// presence (B.6.5, 10 s).
	PendingWindow time.Duration
}

// Replaced names a presence whose socket must be closed with
// session_replaced by whichever node holds it.
type Replaced struct {
	PresenceID string
	SocketID   string
	NodeID     string
}

// AttachResult is the outcome of Attach.
type AttachResult struct {
	Presence   Presence // the row now owned by the caller's socket
	Reattached bool     // an existing presence was taken over: silent ack
	// Replaced lists sockets to close with 1000 session_replaced: the
	// previous socket of a taken-over online presence, and presences of the
	// same sessionId (session-id dedup, B.2 step 5), which are marked
	// disconnected without peer_left.
	Replaced []Replaced
	// Evicted lists grace leases ended to make room under the member or
	// mesh cap: the caller announces peer_left for each.
	Evicted []Presence
}

// ClaimRequest selects the rows a connection may take (B.5).
type ClaimRequest struct {
	MeshID            string
	ClaimerPresenceID string
	MemberPubkey      string
	SessionPubkey     string        // "" for control-plane connections
	Groups            []string      // group names; their ancestors match too
	Priorities        []Priority    // deliverable set (Deliverable)
	Lease             time.Duration // claim lease (30 s)
	Limit             int           // max rows per claim

	// StatusPresenceID, when set, replaces Priorities with what that
	// presence's current status allows (Deliverable), read by the claim
	// itself; Refresh, when also set, first applies the JSONL fallback
	// (B.6.3) to it in the same round trip.
	StatusPresenceID string
	Refresh          *StatusRefresh
}

// AckByID is a client_ack naming the broker's message id (B.4.4): it marks
// the row delivered when the row is in MeshID and addressed to one of Keys
// (the acking connection's member and session pubkeys) or is a multicast.
type AckByID struct {
	MeshID string
	ID     string
	Keys   []string
}

// StatusRefresh is the JSONL status fallback applied before a drain (B.6.3):
// a status that is not dnd and not a fresh hook becomes Inferred.
type StatusRefresh struct {
	Inferred    Status
	FreshWindow time.Duration
}

// TargetRef names a mesh target that has claimable rows.
type TargetRef struct {
	MeshID     string
	TargetSpec string
}

// PeerState is what a member's presence leaves behind for its next hello
// (B.6.1 mesh.peer_state): groups, visibility, profile and last summary.
type PeerState struct {
	Groups          []Group
	Profile         json.RawMessage
	Visible         bool
	LastSummary     string
	LastDisplayName string
	LastSeenAt      *time.Time
	Stats           json.RawMessage // cumulative {messagesIn, messagesOut, toolCalls, errors}
}

// StateEntry is one key of a mesh's shared state (B.14.1).
type StateEntry struct {
	Key       string
	Value     json.RawMessage
	UpdatedBy string
	UpdatedAt time.Time
}

// ErrNotFound is returned by lookups that found no row.
var ErrNotFound = errors.New("not found")

// ErrAmbiguous is returned by a prefix lookup that matched more than one row.
var ErrAmbiguous = errors.New("ambiguous prefix")

// ErrCapacity is returned when a mesh already has MAX_CONNECTIONS_PER_MESH
// live presences across all replicas.
var ErrCapacity = errors.New("mesh at connection capacity")

// ErrInvalidData is returned (wrapping the database error) when the
// database refuses a value itself (a NUL byte in text, say): retrying the
// same write cannot succeed.
var ErrInvalidData = errors.New("invalid data")

// ErrMeshArchived is returned by Attach when the mesh was archived (or
// deleted) after the hello's member lookup.
var ErrMeshArchived = errors.New("mesh archived")

// ErrMemberCapacity is returned when a member already has
// MAX_CONNECTIONS_PER_MEMBER live presences and none in a grace lease.
var ErrMemberCapacity = errors.New("member at connection capacity")

// NewRandomID returns a 32-char lowercase hex id with no time in it, for
// rows users name by a typed prefix (tasks, API keys): the claudemesh CLI
// shows 8 characters, and NewID's leading timestamp would give every row
// created within ~4 s the same 8.
func NewRandomID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("meshd: crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// NewID returns a 32-char lowercase hex id whose first 16 chars are the
// creation time in nanoseconds, so ids sort by creation time (FIFO
// tie-breaks stay in send order) and match message_status's base62 rule.
func NewID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("meshd: crypto/rand: %v", err))
	}
	return fmt.Sprintf("%016x%s", uint64(time.Now().UnixNano()), hex.EncodeToString(b[:]))
}

// IsMulticast reports whether target addresses many (A.1): "*" or "@…"
// (a group, or @all).
func IsMulticast(target string) bool {
	return target == "*" || strings.HasPrefix(target, "@")
}

// InTarget reports whether a presence in groups is reached by the
// multicast target: "*" and "@all" reach everyone, "@name" the members of
// name and of its descendants.
func InTarget(groups []Group, target string) bool {
	if target == "*" || target == "@all" {
		return true
	}
	name := target[1:]
	for _, g := range groups {
		if GroupMatches(g.Name, name) {
			return true
		}
	}
	return false
}

// GroupMatches reports whether a presence in group g is reached by the
// multicast target "@"+name: exact match or g is a descendant (A.1: `@a`
// reaches members of `a/b`).
func GroupMatches(g, name string) bool {
	return g == name || strings.HasPrefix(g, name+"/")
}
