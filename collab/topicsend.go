package collab

import (
	"context"
	"errors"
	"strings"

	"github.com/meshd/meshd"
)

// TopicPost is a `send` whose targetSpec starts with '#' (E.2.4).
type TopicPost struct {
	Target      string // "#<topic id>" as the CLI sends it; "#<name>" works too
	Nonce       string
	Ciphertext  string
	BodyVersion int // 0 means 1; 1 = base64 plaintext, 2 = secretbox under the topic key
	ReplyToID   string
}

// TopicDelivery is a recorded topic post and who must receive it.
type TopicDelivery struct {
	Topic   Topic
	Message TopicMessage // ID is the topic_message id (the push's messageId)
	// Recipients are the topic's non-revoked members at send time, the
	// sender's member included (its other sessions see the post; the
	// broker skips the sending presence).
	Recipients []TopicMember
}

// TopicSend resolves, authorizes and records a `#topic` send for the
// broker's message path. It checks (beyond upstream, E.16-3) that the topic
// belongs to the sender's mesh and that the sender's member is subscribed.
// Errors are *Error with codes topic_not_found, not_topic_member or
// invalid_args, for the send's ack {queued:false, error:"<code>: <message>"};
// any other error is internal. The broker then pushes the post to every
// live presence of each recipient member (on every replica, through NATS,
// like a direct message) and keeps it for the offline ones (see
// docs/protocol.md C.2 "Topic delivery").
func (h *Handler) TopicSend(ctx context.Context, p Peer, post TopicPost) (TopicDelivery, error) {
	var d TopicDelivery
	ref, ok := strings.CutPrefix(post.Target, "#")
	if !ok || checkName("topic", ref) != nil {
		return d, invalidArgs("a topic target is # followed by a topic id or name")
	}
	switch post.BodyVersion {
	case 0:
		post.BodyVersion = 1
	case 1, 2:
	default:
		return d, invalidArgs("bodyVersion must be 1 or 2")
	}
	t, err := h.st.ResolveTopic(ctx, p.MeshID, ref)
	if errors.Is(err, meshd.ErrNotFound) || (err == nil && t.Archived) {
		return d, reject("topic_not_found", "topic "+quote(ref)+" not found")
	}
	if err != nil {
		return d, err
	}
	member, err := h.st.IsTopicMember(ctx, p.MeshID, t.ID, p.MemberID)
	if err != nil {
		return d, err
	}
	if !member {
		return d, reject("not_topic_member", "join the topic before posting to it")
	}
	msg := TopicMessage{TopicID: t.ID, SenderMemberID: p.MemberID, SenderSessionPubkey: p.SessionPubkey,
		Nonce: post.Nonce, Ciphertext: post.Ciphertext, BodyVersion: post.BodyVersion, ReplyToID: post.ReplyToID}
	if err := h.st.AppendTopicMessage(ctx, p.MeshID, &msg); err != nil {
		return d, err
	}
	recipients, err := h.st.TopicMembers(ctx, p.MeshID, t.ID)
	if err != nil {
		return d, err
	}
	msg.SenderPubkey, msg.SenderName = p.SessionPubkey, p.MemberName
	if msg.SenderPubkey == "" {
		msg.SenderPubkey = p.MemberPubkey
	}
	return TopicDelivery{Topic: t, Message: msg, Recipients: recipients}, nil
}

// TopicKeyReply is what GET /api/v1/topics/:name/key serves upstream
// (E.2.6), for a REST route meshd does not have yet.
type TopicKeyReply struct {
	Topic        string `json:"topic"`
	TopicID      string `json:"topicId"`
	EncryptedKey string `json:"encryptedKey"`
	Nonce        string `json:"nonce"`
	SenderPubkey string `json:"senderPubkey"`
	CreatedAt    string `json:"createdAt"`
}

// MemberTopicKey returns the caller's sealed copy of a topic's key. Errors
// are *Error: topic_not_found, topic_unencrypted, key_not_sealed_for_member.
func (h *Handler) MemberTopicKey(ctx context.Context, p Peer, topic string) (TopicKeyReply, error) {
	t, err := h.st.ResolveTopic(ctx, p.MeshID, topic)
	if errors.Is(err, meshd.ErrNotFound) {
		return TopicKeyReply{}, reject("topic_not_found", "topic "+quote(topic)+" not found")
	}
	if err != nil {
		return TopicKeyReply{}, err
	}
	if t.EncryptedKeyPubkey == "" {
		return TopicKeyReply{}, reject("topic_unencrypted", "this topic has no key (v1 bodies only)")
	}
	k, err := h.st.TopicMemberKey(ctx, p.MeshID, t.ID, p.MemberID)
	if errors.Is(err, meshd.ErrNotFound) {
		return TopicKeyReply{}, reject("key_not_sealed_for_member", "no member has sealed this topic's key for you yet")
	}
	if err != nil {
		return TopicKeyReply{}, err
	}
	return TopicKeyReply{Topic: t.Name, TopicID: t.ID, EncryptedKey: k.EncryptedKey, Nonce: k.Nonce,
		SenderPubkey: t.EncryptedKeyPubkey, CreatedAt: iso(k.CreatedAt)}, nil
}
