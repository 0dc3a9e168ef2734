package collab_test

import (
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"

	"golang.org/x/crypto/nacl/box"

	"github.com/meshd/meshd/collab"
)

// openTopicKey opens a sealed topic key as the CLI does (E.2.6):
// crypto_box_open(blob[32:], nonce, blob[:32], x25519(member secret)).
func openTopicKey(t *testing.T, sec ed25519.PrivateKey, encKey, nonceB64 string) []byte {
	t.Helper()
	blob, err := base64.StdEncoding.DecodeString(encKey)
	if err != nil || len(blob) != 80 || len(encKey) != 108 {
		t.Fatalf("encryptedKey %q: %d bytes, %v", encKey, len(blob), err)
	}
	nonce, err := base64.StdEncoding.DecodeString(nonceB64)
	if err != nil || len(nonce) != 24 || len(nonceB64) != 32 {
		t.Fatalf("nonce %q", nonceB64)
	}
	h := sha512.Sum512(sec.Seed())
	var xsec, sender [32]byte
	copy(xsec[:], h[:32])
	xsec[0] &= 248
	xsec[31] = xsec[31]&127 | 64
	copy(sender[:], blob[:32])
	var n [24]byte
	copy(n[:], nonce)
	key, ok := box.Open(nil, blob[32:], &n, &sender, &xsec)
	if !ok || len(key) != 32 {
		t.Fatal("sealed topic key does not open with the member's key")
	}
	return key
}

func TestTopics(t *testing.T) {
	f := newFixture(t, collab.Config{})
	r := f.one(f.alice, "topic_create", `"_reqId":"c1","name":"deploys","description":"ship log"`, "topic_created", "")
	topic := r["topic"].(map[string]any)
	id := topic["id"].(string)
	if r["created"] != true || topic["visibility"] != "public" || topic["name"] != "deploys" {
		t.Fatalf("topic_created: %v", r)
	}
	// The creator's key copy is sealed exactly as E.2.6 says.
	k, err := f.h.MemberTopicKey(f.ctx, f.alice, "deploys")
	if err != nil {
		t.Fatal(err)
	}
	if len(k.SenderPubkey) != 64 || k.TopicID != id {
		t.Fatalf("key reply: %+v", k)
	}
	if raw, _ := base64.StdEncoding.DecodeString(k.EncryptedKey); hex.EncodeToString(raw[:32]) != k.SenderPubkey {
		t.Fatal("blob does not start with the sender public key")
	}
	openTopicKey(t, f.secrets[f.alice.MemberID], k.EncryptedKey, k.Nonce)
	if _, err := f.h.MemberTopicKey(f.ctx, f.bob, "deploys"); code(err) != "key_not_sealed_for_member" {
		t.Fatalf("bob's key: %v", err)
	}

	if r := f.one(f.alice, "topic_create", `"name":"deploys"`, "topic_created", ""); r["created"] != false || r["topic"].(map[string]any)["id"] != id {
		t.Fatalf("re-create: %v", r)
	}
	f.one(f.carol, "topic_create", `"name":"deploys"`, "topic_created", "") // another mesh, another topic
	f.one(f.alice, "topic_create", `"name":"secret","visibility":"private"`, "topic_created", "")

	topics := list(f.one(f.bob, "topic_list", ``, "topic_list_response", ""), "topics")
	if len(topics) != 2 || topics[0].(map[string]any)["name"] != "deploys" || topics[0].(map[string]any)["memberCount"] != 1.0 {
		t.Fatalf("topic_list: %v", topics)
	}

	// Posting needs membership; another mesh cannot even see the topic.
	post := collab.TopicPost{Target: "#" + id, Nonce: "bm9uY2U=", Ciphertext: base64.StdEncoding.EncodeToString([]byte("hello"))}
	if _, err := f.h.TopicSend(f.ctx, f.bob, post); code(err) != "not_topic_member" {
		t.Fatalf("non-member post: %v", err)
	}
	if _, err := f.h.TopicSend(f.ctx, f.carol, post); code(err) != "topic_not_found" {
		t.Fatalf("cross-mesh post: %v", err)
	}
	f.one(f.bob, "topic_join", `"topic":"`+id+`"`, "ack", "")
	d, err := f.h.TopicSend(f.ctx, f.bob, post)
	if err != nil {
		t.Fatal(err)
	}
	if d.Topic.Name != "deploys" || d.Message.ID == "" || d.Message.SenderPubkey != f.bob.MemberPubkey || len(d.Recipients) != 2 {
		t.Fatalf("delivery: %+v", d)
	}
	post2 := post
	post2.ReplyToID, post2.BodyVersion, post2.Target = d.Message.ID, 2, "#deploys"
	d2, err := f.h.TopicSend(f.ctx, f.alice, post2)
	if err != nil || d2.Message.ReplyToID != d.Message.ID {
		t.Fatalf("reply post: %+v %v", d2, err)
	}
	post3 := post
	post3.BodyVersion = 7
	if _, err := f.h.TopicSend(f.ctx, f.alice, post3); code(err) != "invalid_args" {
		t.Fatalf("bad bodyVersion: %v", err)
	}

	h := f.one(f.carol, "topic_history", `"topic":"`+id+`"`, "topic_history_response", "topic_not_found")
	if len(list(h, "messages")) != 0 {
		t.Fatal("another mesh reads history")
	}
	msgs := list(f.one(f.bob, "topic_history", `"_reqId":"h","topic":"deploys","limit":500`, "topic_history_response", ""), "messages")
	if len(msgs) != 2 {
		t.Fatalf("history: %v", msgs)
	}
	newest := msgs[0].(map[string]any)
	if newest["id"] != d2.Message.ID || newest["bodyVersion"] != 2.0 || newest["replyToId"] != d.Message.ID || newest["senderName"] != "alice" {
		t.Fatalf("newest: %v", newest)
	}
	if _, ok := msgs[1].(map[string]any)["replyToId"]; ok {
		t.Fatal("replyToId present on a message without one")
	}
	older := list(f.one(f.bob, "topic_history", `"topic":"deploys","beforeId":"`+d2.Message.ID+`"`, "topic_history_response", ""), "messages")
	if len(older) != 1 || older[0].(map[string]any)["id"] != d.Message.ID {
		t.Fatalf("beforeId: %v", older)
	}

	members := list(f.one(f.alice, "topic_members", `"topic":"deploys"`, "topic_members_response", ""), "members")
	if len(members) != 2 || members[0].(map[string]any)["role"] != "lead" || members[1].(map[string]any)["role"] != "member" {
		t.Fatalf("members: %v", members)
	}
	f.one(f.bob, "topic_mark_read", `"topic":"deploys"`, "ack", "")

	// Leaving stops delivery: bob is no longer a recipient and cannot post.
	f.one(f.bob, "topic_leave", `"topic":"deploys"`, "ack", "")
	d3, err := f.h.TopicSend(f.ctx, f.alice, post)
	if err != nil || len(d3.Recipients) != 1 || d3.Recipients[0].MemberID != f.alice.MemberID {
		t.Fatalf("after leave: %+v %v", d3.Recipients, err)
	}
	if _, err := f.h.TopicSend(f.ctx, f.bob, post); code(err) != "not_topic_member" {
		t.Fatalf("post after leave: %v", err)
	}
	f.one(f.bob, "topic_mark_read", `"topic":"deploys"`, "ack", "not_topic_member")

	// A private topic's history is for its members.
	f.one(f.bob, "topic_history", `"topic":"secret"`, "topic_history_response", "not_topic_member")
	f.one(f.alice, "topic_history", `"topic":"secret"`, "topic_history_response", "")
}

func TestTopicRejections(t *testing.T) {
	f := newFixture(t, collab.Config{})
	f.one(f.alice, "topic_create", `"name":"ok"`, "topic_created", "")
	cases := []struct{ typ, fields, reply, code string }{
		{"topic_create", `"name":""`, "error", "invalid_args"},
		{"topic_create", `"name":5`, "error", "invalid_args"},
		{"topic_create", `"name":"x","visibility":"secret"`, "error", "invalid_args"},
		{"topic_create", `"name":"` + string(make([]byte, 0)) + `a\u0000b"`, "error", "invalid_args"},
		{"topic_join", `"topic":"ok","role":"king"`, "ack", "invalid_args"},
		{"topic_join", `"topic":"nope"`, "ack", "topic_not_found"},
		{"topic_leave", ``, "ack", "invalid_args"},
		{"topic_members", `"topic":"nope"`, "topic_members_response", "topic_not_found"},
		{"topic_history", `"topic":"ok","limit":"ten"`, "topic_history_response", "invalid_args"},
		{"remember", `"content":"   "`, "memory_stored", "invalid_args"},
		{"remember", `"content":"x","tags":"notalist"`, "memory_stored", "invalid_args"},
		{"create_task", ``, "task_created", "invalid_args"},
		{"get_skill", `"name":""`, "skill_data", "invalid_args"},
		{"share_context", `"summary":["a"]`, "ack", "invalid_args"},
	}
	for _, c := range cases {
		r := f.one(f.alice, c.typ, `"_reqId":"bad"`+prefixComma(c.fields), c.reply, c.code)
		if r["_reqId"] != "bad" {
			t.Errorf("%s: _reqId %v", c.typ, r["_reqId"])
		}
		if msg, _ := r["message"].(string); r["type"] == "error" && msg == "" {
			t.Errorf("%s: error without message", c.typ)
		}
	}
	// The connection still works after the bad frames.
	f.one(f.alice, "topic_list", ``, "topic_list_response", "")
	// A frame that is not an object is rejected, not dropped.
	rs, ok := f.h.Handle(f.ctx, f.alice, "topic_list", []byte(`[1]`))
	if !ok || len(rs) != 1 {
		t.Fatalf("array frame: %v", rs)
	}
}

func code(err error) string {
	var ce *collab.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	if err != nil {
		return "internal: " + err.Error()
	}
	return ""
}
