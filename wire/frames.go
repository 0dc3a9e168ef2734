// Package wire holds the claudemesh wire protocol: frame types, the
// canonical bytes that hellos, attestations, invites and audit rows are
// signed or hashed over, and their verification. It is shared by the broker
// and the Go client and does no I/O. docs/protocol.md  is the contract;
// strings and vectors marked normative there are pinned in this package's
// tests.
package wire

import (
	"encoding/json"

	"github.com/meshd/meshd"
)

// Envelope is decoded first to find a frame's type and request id.
type Envelope struct {
	Type  string `json:"type"`
	ReqID string `json:"_reqId,omitempty"`
}

// PeerInfo is what hello and session_hello both say about the connecting
// session (B.2/B.3 field tables); it is embedded, so its JSON fields sit at
// the top level of both frames.
type PeerInfo struct {
	DisplayName     string        `json:"displayName,omitempty"`
	SessionID       string        `json:"sessionId"`
	PID             *int          `json:"pid"`
	CWD             *string       `json:"cwd"`
	Hostname        string        `json:"hostname,omitempty"`
	PeerType        string        `json:"peerType,omitempty"`
	Channel         string        `json:"channel,omitempty"`
	Model           string        `json:"model,omitempty"`
	Groups          []meshd.Group `json:"groups,omitempty"`
	ProtocolVersion int           `json:"protocolVersion,omitempty"`
	Capabilities    []string      `json:"capabilities,omitempty"`
}

// Hello is the member-key handshake (B.2). Timestamp is kept raw so that a
// non-number is reported as timestamp_skew rather than a decode error.
type Hello struct {
	Type          string `json:"type"`
	MeshID        string `json:"meshId"`
	MemberID      string `json:"memberId"`
	Pubkey        string `json:"pubkey"`
	SessionPubkey string `json:"sessionPubkey,omitempty"`
	PeerInfo
	Timestamp json.RawMessage `json:"timestamp"`
	Signature string          `json:"signature"`
}

// Attestation is a parent member's statement that a session key may act for
// it until ExpiresAt (B.3).
type Attestation struct {
	SessionPubkey      string          `json:"sessionPubkey"`
	ParentMemberPubkey string          `json:"parentMemberPubkey"`
	ExpiresAt          json.RawMessage `json:"expiresAt"`
	Signature          string          `json:"signature"`
}

// SessionHello is the per-session handshake vouched by the parent (B.3).
// ParentAttestation is raw so that "missing or not an object" can be told
// apart from a decode error.
type SessionHello struct {
	Type               string          `json:"type"`
	MeshID             string          `json:"meshId"`
	ParentMemberID     string          `json:"parentMemberId,omitempty"`
	ParentMemberPubkey string          `json:"parentMemberPubkey"`
	SessionPubkey      string          `json:"sessionPubkey"`
	ParentAttestation  json.RawMessage `json:"parentAttestation"`
	PeerInfo
	Role      string          `json:"role,omitempty"`
	Timestamp json.RawMessage `json:"timestamp"`
	Signature string          `json:"signature"`
}

// MemberProfile is hello_ack.memberProfile.
type MemberProfile struct {
	RoleTag     *string       `json:"roleTag"`
	Groups      []meshd.Group `json:"groups"`
	MessageMode string        `json:"messageMode"`
}

// HelloAck is the first frame after a successful handshake (A.3-19).
type HelloAck struct {
	Type              string         `json:"type"` // "hello_ack"
	PresenceID        string         `json:"presenceId"`
	MemberDisplayName string         `json:"memberDisplayName"`
	MemberProfile     *MemberProfile `json:"memberProfile,omitempty"`
	Restored          bool           `json:"restored,omitempty"`
	LastSummary       string         `json:"lastSummary,omitempty"`
	LastSeenAt        string         `json:"lastSeenAt,omitempty"`
	RestoredGroups    []meshd.Group  `json:"restoredGroups,omitempty"`
	Services          []any          `json:"services,omitempty"`
	// MeshPolicy is sent on every successful hello and session_hello;
	// RestoredStats with the other restored fields (docs/protocol.md C.3).
	MeshPolicy    *MeshPolicy     `json:"meshPolicy,omitempty"`
	RestoredStats json.RawMessage `json:"restoredStats,omitempty"`
}

// MeshPolicy says which member fields members may edit themselves.
type MeshPolicy struct {
	SelfEditable json.RawMessage `json:"selfEditable"`
}

// Error is the error frame (B.1).
type Error struct {
	Type    string `json:"type"` // "error"
	Code    string `json:"code"`
	Message string `json:"message"`
	ID      string `json:"id,omitempty"`
	ReqID   string `json:"_reqId,omitempty"`
}

// Send is a client's message (B.4.1).
type Send struct {
	Type               string   `json:"type"`
	ID                 string   `json:"id,omitempty"`
	TargetSpec         string   `json:"targetSpec"`
	Priority           string   `json:"priority"`
	Nonce              *string  `json:"nonce"`
	Ciphertext         *string  `json:"ciphertext"`
	ClientMessageID    string   `json:"client_message_id,omitempty"`
	RequestFingerprint string   `json:"request_fingerprint,omitempty"`
	Mentions           []string `json:"mentions,omitempty"`
	ReplyToID          string   `json:"replyToId,omitempty"`
	BodyVersion        int      `json:"bodyVersion,omitempty"` // topic sends: 1 base64, 2 topic key (docs/protocol.md C.2.4)
}

// Ack answers a send (no _reqId; `id` echoes send.id) and, with
// messageId "" and queued false, set_visible/set_profile.
type Ack struct {
	Type      string `json:"type"` // "ack"
	ID        string `json:"id"`
	MessageID string `json:"messageId"`
	Queued    bool   `json:"queued"`
	Error     string `json:"error,omitempty"`
	ReqID     string `json:"_reqId,omitempty"`
}

// Push delivers a message or a system event (B.4.3, A.3-13).
type Push struct {
	Type               string          `json:"type"` // "push"
	MessageID          string          `json:"messageId"`
	MeshID             string          `json:"meshId"`
	SenderPubkey       string          `json:"senderPubkey"`
	SenderMemberPubkey string          `json:"senderMemberPubkey,omitempty"`
	SenderMemberID     string          `json:"senderMemberId,omitempty"`
	SenderName         string          `json:"senderName,omitempty"`
	Priority           string          `json:"priority"`
	Nonce              string          `json:"nonce"`
	Ciphertext         string          `json:"ciphertext"`
	CreatedAt          string          `json:"createdAt"`
	Subtype            string          `json:"subtype,omitempty"`
	Event              string          `json:"event,omitempty"`
	EventData          json.RawMessage `json:"eventData,omitempty"`
	ClientMessageID    string          `json:"client_message_id,omitempty"`
	RequestFingerprint string          `json:"request_fingerprint,omitempty"`
	ReplyToID          string          `json:"replyToId,omitempty"`
	Topic              string          `json:"topic,omitempty"`       // a #topic post: the topic's name
	BodyVersion        int             `json:"bodyVersion,omitempty"` // a #topic post: 1 base64, 2 topic key
}

// ClientAck confirms a push (B.4.4).
type ClientAck struct {
	Type            string `json:"type"`
	ClientMessageID string `json:"clientMessageId,omitempty"`
	BrokerMessageID string `json:"brokerMessageId,omitempty"`
}

// MessageStatus asks where a message is (B.4.4).
type MessageStatus struct {
	Type      string `json:"type"`
	MessageID string `json:"messageId"`
	ReqID     string `json:"_reqId,omitempty"`
}

// StatusRecipient is one entry of message_status_result.recipients.
type StatusRecipient struct {
	Name   string `json:"name"`
	Pubkey string `json:"pubkey"`
	Status string `json:"status"` // delivered | held | disconnected
}

// MessageStatusResult answers message_status.
type MessageStatusResult struct {
	Type        string            `json:"type"` // "message_status_result"
	MessageID   string            `json:"messageId"`
	TargetSpec  string            `json:"targetSpec"`
	Delivered   bool              `json:"delivered"`
	DeliveredAt *string           `json:"deliveredAt"`
	Recipients  []StatusRecipient `json:"recipients"`
	ReqID       string            `json:"_reqId,omitempty"`
}

// Peer is one entry of peers_list (B.6.8).
type Peer struct {
	Pubkey       string          `json:"pubkey"`
	MemberPubkey string          `json:"memberPubkey"`
	DisplayName  string          `json:"displayName"`
	Status       string          `json:"status"`
	Summary      *string         `json:"summary"`
	Groups       []meshd.Group   `json:"groups"`
	SessionID    string          `json:"sessionId"`
	ConnectedAt  string          `json:"connectedAt"`
	CWD          string          `json:"cwd"`
	PeerRole     string          `json:"peerRole"`
	Hostname     string          `json:"hostname,omitempty"`
	PeerType     string          `json:"peerType,omitempty"`
	Channel      string          `json:"channel,omitempty"`
	Model        string          `json:"model,omitempty"`
	Visible      *bool           `json:"visible,omitempty"`
	Profile      json.RawMessage `json:"profile,omitempty"`
}

// PeersList answers list_peers.
type PeersList struct {
	Type  string `json:"type"` // "peers_list"
	Peers []Peer `json:"peers"`
	ReqID string `json:"_reqId,omitempty"`
}

// SystemEvent is the eventData of peer_joined/peer_returned/peer_left
// (A.3-12).
type SystemEvent struct {
	Name        string        `json:"name"`
	DisplayName string        `json:"displayName"`
	Pubkey      string        `json:"pubkey"`
	Groups      []meshd.Group `json:"groups"`
	PeerType    string        `json:"peerType,omitempty"`
	LastSeenAt  string        `json:"lastSeenAt,omitempty"`
	Summary     string        `json:"summary,omitempty"`
}

// Frame type names.
const (
	TypeHello         = "hello"
	TypeSessionHello  = "session_hello"
	TypeHelloAck      = "hello_ack"
	TypeError         = "error"
	TypeSend          = "send"
	TypeAck           = "ack"
	TypePush          = "push"
	TypeClientAck     = "client_ack"
	TypeMessageStatus = "message_status"
	TypeListPeers     = "list_peers"
	TypePeersList     = "peers_list"
)
