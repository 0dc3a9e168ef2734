package broker_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/broker"
)

// topicSend posts text to target and returns the ack.
func (r *rawConn) topicSend(id, target, text string) map[string]any {
	r.t.Helper()
	r.send(map[string]any{"type": "send", "id": id, "targetSpec": target, "priority": "now",
		"nonce": base64.StdEncoding.EncodeToString(make([]byte, 24)), "ciphertext": base64.StdEncoding.EncodeToString([]byte(text))})
	for {
		m := r.expectFrame("ack")
		if m["id"] == id {
			return m
		}
	}
}

// noPush asserts that no message push reaches r within d: it waits, then
// reads up to the reply of a request sent after the wait (a read deadline
// would break the socket).
func (r *rawConn) noPush(d time.Duration, what string) {
	r.t.Helper()
	time.Sleep(d)
	r.send(`{"type":"list_tasks","_reqId":"sync"}`)
	for {
		m, ce, err := r.next(2 * time.Second)
		if err != nil || ce != nil {
			r.t.Fatalf("%s: err %v close %v", what, err, ce)
		}
		if m["type"] == "push" && m["subtype"] != "system" {
			r.t.Fatalf("%s: got push %v", what, m)
		}
		if m["_reqId"] == "sync" {
			return
		}
	}
}

// topicPush waits for the next message push and checks it is text.
func (r *rawConn) topicPush(text string) map[string]any {
	r.t.Helper()
	for {
		m, ce, err := r.next(2 * time.Second)
		if err != nil || ce != nil {
			r.t.Fatalf("waiting for %q: err %v close %v", text, err, ce)
		}
		if m["type"] != "push" || m["subtype"] == "system" {
			continue
		}
		if b, _ := base64.StdEncoding.DecodeString(m["ciphertext"].(string)); string(b) != text {
			r.t.Fatalf("push %v, want %q", m, text)
		}
		return m
	}
}

// TestTopicSendAcrossReplicas: a #topic post reaches a member online on the
// other replica at once (the wake-up, not the re-drain, which is off here),
// reaches an offline member when it connects, never reaches a non-member,
// and stops reaching a member who left. Non-members and unknown topics get
// a queued:false ack with the code.
func TestTopicSendAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config) { c.RedrainInterval = time.Hour })
	mesh := e.newMesh("Topics")
	alice, bob, carol, dave := e.enroll(mesh, "alice"), e.enroll(mesh, "bob"), e.enroll(mesh, "carol"), e.enroll(mesh, "dave")
	a := e.authed(0, alice)
	a.send(`{"type":"topic_create","_reqId":"c","name":"ops"}`)
	created := a.replies(1)[0]
	topicID, _ := created["topic"].(map[string]any)["id"].(string)
	if created["type"] != "topic_created" || topicID == "" {
		t.Fatalf("topic_create %v", created)
	}
	b := e.authed(1, bob)
	b.send(`{"type":"topic_join","_reqId":"j","topic":"ops"}`)
	if m := b.replies(1)[0]; m["type"] != "ack" || m["error"] != nil {
		t.Fatalf("bob join %v", m)
	}
	d := e.authed(1, dave) // dave joins, then goes offline
	d.send(`{"type":"topic_join","_reqId":"j","topic":"` + topicID + `"}`)
	d.replies(1)
	_ = d.ws.Close()
	c := e.authed(1, carol) // carol never joins

	start := time.Now()
	ack := a.topicSend("m1", "#"+topicID, "deploy at noon")
	if ack["queued"] != true || ack["messageId"] == "" || ack["error"] != nil {
		t.Fatalf("ack %v", ack)
	}
	p := b.topicPush("deploy at noon")
	if el := time.Since(start); el > time.Second {
		t.Fatalf("push after %v", el)
	}
	if p["senderMemberId"] != alice.member.ID || p["senderName"] != "alice" || p["topic"] != "ops" ||
		p["bodyVersion"] != float64(1) || p["replyToId"] != nil {
		t.Fatalf("push %v", p)
	}
	a.noPush(300*time.Millisecond, "the sender")
	c.noPush(300*time.Millisecond, "carol, not in the topic")
	// By name works too.
	a.topicSend("m2", "#ops", "and by name")
	b.topicPush("and by name")

	// A v2 body answering the first post: the push carries the version and
	// the history id it answers (a replyToId outside the topic is dropped).
	a.send(map[string]any{"type": "send", "id": "m2b", "targetSpec": "#ops", "priority": "now",
		"nonce": base64.StdEncoding.EncodeToString(make([]byte, 24)), "ciphertext": base64.StdEncoding.EncodeToString([]byte("sealed")),
		"bodyVersion": 2, "replyToId": ack["messageId"]})
	a.expectFrame("ack")
	if p := b.topicPush("sealed"); p["topic"] != "ops" || p["bodyVersion"] != float64(2) || p["replyToId"] != ack["messageId"] {
		t.Fatalf("v2 push %v", p)
	}

	// Dave gets all three on connect, in order, on the other replica, with
	// the topic and the version on the drained pushes.
	d2 := e.authed(0, dave)
	if p := d2.topicPush("deploy at noon"); p["topic"] != "ops" || p["bodyVersion"] != float64(1) {
		t.Fatalf("drained push %v", p)
	}
	d2.topicPush("and by name")
	if p := d2.topicPush("sealed"); p["bodyVersion"] != float64(2) || p["replyToId"] != ack["messageId"] {
		t.Fatalf("drained v2 push %v", p)
	}

	// The history has both, newest first, with the acked id.
	b.send(`{"type":"topic_history","_reqId":"h","topic":"ops"}`)
	h := b.replies(1)[0]
	msgs, _ := h["messages"].([]any)
	if len(msgs) != 3 || msgs[2].(map[string]any)["id"] != ack["messageId"] {
		t.Fatalf("history %v", h)
	}

	// Bob leaves: the next post reaches dave (online now), not bob.
	b.send(`{"type":"topic_leave","_reqId":"l","topic":"ops"}`)
	b.replies(1)
	a.topicSend("m3", "#"+topicID, "after bob left")
	d2.topicPush("after bob left")
	b.noPush(300*time.Millisecond, "bob, who left")

	// Refusals: a non-member, an unknown topic, a bad bodyVersion.
	for _, tc := range []struct {
		r      *rawConn
		target string
		code   string
	}{
		{c, "#" + topicID, "not_topic_member: "},
		{c, "#nope", "topic_not_found: "},
		{b, "#ops", "not_topic_member: "},
	} {
		ack := tc.r.topicSend("x", tc.target, "hi")
		if ack["queued"] != false || !strings.HasPrefix(ack["error"].(string), tc.code) {
			t.Errorf("%s: ack %v, want %s", tc.target, ack, tc.code)
		}
	}
	a.send(map[string]any{"type": "send", "id": "bv", "targetSpec": "#ops", "nonce": "n", "ciphertext": "c", "bodyVersion": 3})
	if m := a.expectFrame("ack"); m["queued"] != false || !strings.HasPrefix(m["error"].(string), "invalid_args: ") {
		t.Fatalf("bodyVersion 3: %v", m)
	}
	c.noPush(200*time.Millisecond, "carol after the refusals")
}
