package collab

import (
	"context"
	"errors"
	"time"

	"github.com/meshd/meshd"
)

// Topic is a row of mesh.topic (E.2.1).
type Topic struct {
	ID, MeshID, Name, Description, Visibility string
	EncryptedKeyPubkey                        string // "" for an unencrypted (v1-only) topic
	MemberCount                               int
	CreatedAt                                 time.Time
	Archived                                  bool
}

// TopicMember is a membership joined with the member row.
type TopicMember struct {
	MemberID, Pubkey, DisplayName, Role string
	JoinedAt                            time.Time
	LastReadAt                          *time.Time
}

// TopicMessage is a row of mesh.topic_message. SenderPubkey and SenderName
// are read-only (history): the session key, else the member key, and the
// member's display name.
type TopicMessage struct {
	ID, TopicID, SenderMemberID, SenderSessionPubkey string
	SenderPubkey, SenderName                         string
	Nonce, Ciphertext                                string
	BodyVersion                                      int
	ReplyToID                                        string
	CreatedAt                                        time.Time
}

// TopicKey is one member's sealed copy of a topic key (E.2.6).
type TopicKey struct {
	EncryptedKey, Nonce string
	CreatedAt           time.Time
}

// TopicStore keeps topics, memberships, history and sealed keys. Topic ids
// passed in must belong to meshID, else meshd.ErrNotFound.
type TopicStore interface {
	// CreateTopic inserts t unless (mesh, name) exists (archived included),
	// seals key for creatorID when non-nil, and subscribes creatorID as
	// lead (an existing membership keeps its role). t is filled from the
	// stored row; created reports whether it is new.
	CreateTopic(ctx context.Context, t *Topic, creatorID string, key *TopicKey) (created bool, err error)
	// ResolveTopic finds a topic by id (E.2.2: 20+ chars of [A-Za-z0-9_-],
	// archived included) or else by exact name among live topics.
	ResolveTopic(ctx context.Context, meshID, ref string) (Topic, error)
	// ListTopics lists live topics by name, with member counts.
	ListTopics(ctx context.Context, meshID string) ([]Topic, error)
	// JoinTopic subscribes; an existing membership keeps its role.
	JoinTopic(ctx context.Context, meshID, topicID, memberID, role string) error
	// LeaveTopic unsubscribes (the sealed key row stays); reports whether
	// the member was subscribed.
	LeaveTopic(ctx context.Context, meshID, topicID, memberID string) (bool, error)
	// MarkTopicRead sets last_read_at = now; false when not a member.
	MarkTopicRead(ctx context.Context, meshID, topicID, memberID string) (bool, error)
	// TopicMembers lists the non-revoked members of the topic by display
	// name: the recipients of a `#topic` send.
	TopicMembers(ctx context.Context, meshID, topicID string) ([]TopicMember, error)
	// IsTopicMember reports whether a non-revoked member is subscribed.
	IsTopicMember(ctx context.Context, meshID, topicID, memberID string) (bool, error)
	// TopicHistory returns up to limit messages newest first, older than
	// beforeID's created_at when beforeID is set.
	TopicHistory(ctx context.Context, meshID, topicID string, limit int, beforeID string) ([]TopicMessage, error)
	// AppendTopicMessage records a post (ID and CreatedAt are set); a
	// ReplyToID outside the topic is dropped.
	AppendTopicMessage(ctx context.Context, meshID string, m *TopicMessage) error
	// TopicMemberKey returns memberID's sealed copy of the topic key.
	TopicMemberKey(ctx context.Context, meshID, topicID, memberID string) (TopicKey, error)
}

var validVisibility = map[string]bool{"public": true, "private": true, "dm": true}
var validTopicRole = map[string]bool{"lead": true, "member": true, "observer": true}

const (
	historyDefault = 50
	historyMax     = 200
)

func (h *Handler) topicCreate(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Visibility  string `json:"visibility"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if err := checkName("name", m.Name); err != nil {
		return nil, err
	}
	if m.Visibility == "" {
		m.Visibility = "public"
	}
	if !validVisibility[m.Visibility] {
		return nil, invalidArgs("visibility must be public, private or dm")
	}
	if len(m.Description) > 4096 {
		return nil, invalidArgs("description longer than 4096 bytes")
	}
	t := Topic{MeshID: p.MeshID, Name: m.Name, Description: m.Description, Visibility: m.Visibility}
	var key *TopicKey
	bundle, ok, err := sealTopicKey(p.MemberPubkey)
	if err != nil {
		return nil, err
	}
	if ok {
		t.EncryptedKeyPubkey = bundle.senderPubHex
		key = &TopicKey{EncryptedKey: bundle.encryptedKey, Nonce: bundle.nonce}
	}
	created, err := h.st.CreateTopic(ctx, &t, p.MemberID, key)
	if err != nil {
		return nil, err
	}
	f := newFrame("topic_created", req)
	f["topic"] = map[string]any{"id": t.ID, "name": m.Name, "visibility": m.Visibility}
	f["created"] = created
	return []any{f}, nil
}

func (h *Handler) topicList(ctx context.Context, p Peer, req *request) ([]any, error) {
	topics, err := h.st.ListTopics(ctx, p.MeshID)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(topics))
	for _, t := range topics {
		out = append(out, map[string]any{"id": t.ID, "name": t.Name, "description": strOrNil(t.Description),
			"visibility": t.Visibility, "memberCount": t.MemberCount, "createdAt": iso(t.CreatedAt)})
	}
	f := newFrame("topic_list_response", req)
	f["topics"] = out
	return []any{f}, nil
}

// resolveTopic decodes the request's topic field and resolves it within
// the caller's mesh.
func (h *Handler) resolveTopic(ctx context.Context, p Peer, req *request) (Topic, error) {
	ref := req.str("topic")
	if err := checkName("topic", ref); err != nil {
		return Topic{}, err
	}
	t, err := h.st.ResolveTopic(ctx, p.MeshID, ref)
	if errors.Is(err, meshd.ErrNotFound) {
		return t, reject("topic_not_found", "topic "+quote(ref)+" not found")
	}
	return t, err
}

func quote(s string) string { return "\"" + s + "\"" }

// topicJoin, topicLeave and topicMarkRead are fire-and-forget in the CLI:
// success is an inert ack without error (never silence).
func (h *Handler) topicJoin(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Role string `json:"role"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if m.Role == "" {
		m.Role = "member"
	}
	if !validTopicRole[m.Role] {
		return nil, invalidArgs("role must be lead, member or observer")
	}
	t, err := h.resolveTopic(ctx, p, req)
	if err != nil {
		return nil, err
	}
	if err := h.st.JoinTopic(ctx, p.MeshID, t.ID, p.MemberID, m.Role); err != nil {
		return nil, err
	}
	return []any{inertAck(req, "")}, nil
}

func (h *Handler) topicLeave(ctx context.Context, p Peer, req *request) ([]any, error) {
	t, err := h.resolveTopic(ctx, p, req)
	if err != nil {
		return nil, err
	}
	if _, err := h.st.LeaveTopic(ctx, p.MeshID, t.ID, p.MemberID); err != nil {
		return nil, err
	}
	return []any{inertAck(req, "")}, nil
}

func (h *Handler) topicMarkRead(ctx context.Context, p Peer, req *request) ([]any, error) {
	t, err := h.resolveTopic(ctx, p, req)
	if err != nil {
		return nil, err
	}
	member, err := h.st.MarkTopicRead(ctx, p.MeshID, t.ID, p.MemberID)
	if err != nil {
		return nil, err
	}
	if !member {
		return nil, reject("not_topic_member", "you are not a member of this topic")
	}
	return []any{inertAck(req, "")}, nil
}

func (h *Handler) topicMembers(ctx context.Context, p Peer, req *request) ([]any, error) {
	t, err := h.resolveTopic(ctx, p, req)
	if err != nil {
		return nil, err
	}
	members, err := h.st.TopicMembers(ctx, p.MeshID, t.ID)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(members))
	for _, m := range members {
		out = append(out, map[string]any{"memberId": m.MemberID, "pubkey": m.Pubkey, "displayName": m.DisplayName,
			"role": m.Role, "joinedAt": iso(m.JoinedAt), "lastReadAt": isoOrNil(m.LastReadAt)})
	}
	f := newFrame("topic_members_response", req)
	f["topic"], f["members"] = req.str("topic"), out
	return []any{f}, nil
}

// topicHistory: any member of the mesh reads a public topic's history (as
// upstream); a private or dm topic's history is for its members only.
func (h *Handler) topicHistory(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Limit    *float64 `json:"limit"`
		BeforeID string   `json:"beforeId"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	limit := historyDefault
	if m.Limit != nil {
		limit = min(max(int(*m.Limit), 1), historyMax)
	}
	t, err := h.resolveTopic(ctx, p, req)
	if err != nil {
		return nil, err
	}
	if t.Visibility != "public" {
		ok, err := h.st.IsTopicMember(ctx, p.MeshID, t.ID, p.MemberID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, reject("not_topic_member", "the history of a "+t.Visibility+" topic is for its members")
		}
	}
	msgs, err := h.st.TopicHistory(ctx, p.MeshID, t.ID, limit, m.BeforeID)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(msgs))
	for _, x := range msgs {
		row := map[string]any{"id": x.ID, "senderPubkey": x.SenderPubkey, "senderMemberId": x.SenderMemberID,
			"senderName": x.SenderName, "nonce": x.Nonce, "ciphertext": x.Ciphertext, "bodyVersion": x.BodyVersion,
			"createdAt": iso(x.CreatedAt)}
		if x.ReplyToID != "" {
			row["replyToId"] = x.ReplyToID
		}
		out = append(out, row)
	}
	f := newFrame("topic_history_response", req)
	f["topic"], f["messages"] = req.str("topic"), out
	return []any{f}, nil
}
