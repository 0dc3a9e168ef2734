package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// Hostile handshakes (docs/protocol.md B.2, B.3, A.3-10): each row asserts the
// error frame code, the close code and text, and the metric label; after
// every rejection a valid client is still served.
func TestHandshakeRejections(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Hostile")
	alice := e.enroll(mesh, "alice")
	revoked := e.enroll(mesh, "revoked")
	if err := e.st.RevokeMember(context.Background(), mesh.ID, revoked.member.ID); err != nil {
		t.Fatal(err)
	}
	stranger := client.GenerateIdentity()
	other := client.GenerateIdentity()
	sess := client.GenerateIdentity()

	type tc struct {
		name      string
		frame     func(now time.Time) map[string]any
		code      string
		close     int
		closeText string
		metric    string
	}
	cases := []tc{
		{"wrong-key signature", func(now time.Time) map[string]any {
			f := helloFrame(alice, now)
			resign(f, other.Secret)
			return f
		}, "bad_signature", 1008, "bad_signature", "bad_signature"},
		{"timestamp 61 s old", func(now time.Time) map[string]any {
			f := helloFrame(alice, now)
			f["timestamp"] = float64(now.Add(-61 * time.Second).UnixMilli())
			resign(f, alice.key.Secret)
			return f
		}, "timestamp_skew", 1008, "timestamp_skew", "timestamp_skew"},
		{"timestamp 61 s in the future", func(now time.Time) map[string]any {
			f := helloFrame(alice, now)
			f["timestamp"] = float64(now.Add(61 * time.Second).UnixMilli())
			resign(f, alice.key.Secret)
			return f
		}, "timestamp_skew", 1008, "timestamp_skew", "timestamp_skew"},
		{"tampered meshId", func(now time.Time) map[string]any {
			f := helloFrame(alice, now)
			f["meshId"] = mesh.ID + "x"
			return f
		}, "bad_signature", 1008, "bad_signature", "bad_signature"},
		{"non-hex pubkey", func(now time.Time) map[string]any {
			f := helloFrame(alice, now)
			f["pubkey"] = "not-hex"
			return f
		}, "malformed", 1008, "malformed", "malformed"},
		{"short signature", func(now time.Time) map[string]any {
			f := helloFrame(alice, now)
			f["signature"] = "abc123"
			return f
		}, "malformed", 1008, "malformed", "malformed"},
		{"uppercase session pubkey", func(now time.Time) map[string]any {
			f := helloFrame(alice, now)
			f["sessionPubkey"] = strings.ToUpper(sess.Pubkey)
			return f
		}, "bad_session_pubkey", 1008, "bad_session_pubkey", "bad_session_pubkey"},
		{"unknown member", func(now time.Time) map[string]any {
			id := identity{mesh: mesh, member: alice.member, key: stranger}
			return helloFrame(id, now)
		}, "unauthorized", 1008, "unauthorized", "unauthorized"},
		{"memberId does not match the member found", func(now time.Time) map[string]any {
			f := helloFrame(alice, now)
			f["memberId"] = revoked.member.ID
			resign(f, alice.key.Secret)
			return f
		}, "unauthorized", 1008, "unauthorized", "unauthorized"},
		{"revoked member", func(now time.Time) map[string]any {
			return helloFrame(revoked, now)
		}, "revoked", 4002, "banned", "revoked"},
		{"session: uppercase session pubkey", func(now time.Time) map[string]any {
			f := sessionHelloFrame(alice, sess, now, time.Hour)
			f["sessionPubkey"] = strings.ToUpper(sess.Pubkey)
			return f
		}, "bad_session_pubkey", 1008, "bad_session_pubkey", "bad_session_pubkey"},
		{"session: attestation for another session pubkey", func(now time.Time) map[string]any {
			f := sessionHelloFrame(alice, sess, now, time.Hour)
			f["parentAttestation"] = sessionHelloFrame(alice, other, now, time.Hour)["parentAttestation"]
			return f
		}, "attestation_mismatch", 1008, "attestation_mismatch", "attestation_mismatch"},
		{"session: attestation expired", func(now time.Time) map[string]any {
			return sessionHelloFrame(alice, sess, now, -time.Second)
		}, "expired", 1008, "expired", "attestation_expired"},
		{"session: attestation TTL 24 h + 60 s", func(now time.Time) map[string]any {
			return sessionHelloFrame(alice, sess, now, 24*time.Hour+time.Minute)
		}, "ttl_too_long", 1008, "ttl_too_long", "attestation_ttl_too_long"},
		{"session: attestation signed by another key", func(now time.Time) map[string]any {
			f := sessionHelloFrame(alice, sess, now, time.Hour)
			att := f["parentAttestation"].(map[string]any)
			att["signature"] = wire.Sign(other.Secret, wire.AttestationCanonical(alice.key.Pubkey, sess.Pubkey, att["expiresAt"].(float64)))
			return f
		}, "bad_signature", 1008, "bad_signature", "attestation_bad_signature"},
		{"session: hello signed by the parent key (captured attestation)", func(now time.Time) map[string]any {
			f := sessionHelloFrame(alice, sess, now, time.Hour)
			f["signature"] = wire.Sign(alice.key.Secret, wire.SessionHelloCanonical(mesh.ID, alice.key.Pubkey, sess.Pubkey, f["timestamp"].(float64)))
			return f
		}, "bad_signature", 1008, "bad_signature", "session_bad_signature"},
		{"session: hello timestamp skew", func(now time.Time) map[string]any {
			return sessionHelloFrame(alice, sess, now.Add(-2*time.Minute), time.Hour+2*time.Minute)
		}, "timestamp_skew", 1008, "timestamp_skew", "session_timestamp_skew"},
		{"session: mismatched parentMemberId", func(now time.Time) map[string]any {
			f := sessionHelloFrame(alice, sess, now, time.Hour)
			f["parentMemberId"] = revoked.member.ID
			return f
		}, "parent_member_id_mismatch", 1008, "parent_member_id_mismatch", "parent_member_id_mismatch"},
		{"session: revoked parent", func(now time.Time) map[string]any {
			return sessionHelloFrame(revoked, sess, now, time.Hour)
		}, "revoked", 4002, "banned", "revoked"},
		{"session: parent not a member", func(now time.Time) map[string]any {
			return sessionHelloFrame(identity{mesh: mesh, member: alice.member, key: stranger}, sess, now, time.Hour)
		}, "unauthorized", 1008, "unauthorized", "unauthorized"},
	}
	r := e.replicas[0]
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := counter(t, r, "broker_connections_rejected_total", "reason", c.metric)
			rc := e.raw(0)
			rc.send(c.frame(time.Now()))
			errFrame := rc.expectFrame("error")
			if errFrame["code"] != c.code {
				t.Errorf("code %v, want %s (message %v)", errFrame["code"], c.code, errFrame["message"])
			}
			ce := rc.expectClose()
			if ce.Code != c.close || ce.Text != c.closeText {
				t.Errorf("close %d %q, want %d %q", ce.Code, ce.Text, c.close, c.closeText)
			}
			if got := counter(t, r, "broker_connections_rejected_total", "reason", c.metric); got != before+1 {
				t.Errorf("metric %s: %v → %v", c.metric, before, got)
			}
			// The broker still serves a valid client.
			ok := e.raw(0)
			ok.send(helloFrame(alice, time.Now()))
			ok.expectFrame("hello_ack")
		})
	}
	if err := r.srv.Hub().ConsistencyCheck(); err != nil {
		t.Fatal(err)
	}
}

func TestRevokedMessageNamesTheMesh(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Platform")
	bob := e.enroll(mesh, "bob")
	if err := e.st.RevokeMember(context.Background(), mesh.ID, bob.member.ID); err != nil {
		t.Fatal(err)
	}
	rc := e.raw(0)
	rc.send(helloFrame(bob, time.Now()))
	f := rc.expectFrame("error")
	want := `You've been removed from "Platform". Contact the mesh owner to rejoin.`
	if f["message"] != want {
		t.Fatalf("message %q, want %q", f["message"], want)
	}
}

func TestCapacityAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config) { c.MaxConnectionsPerMesh = 2 })
	mesh := e.newMesh("Cap")
	a, b, c := e.enroll(mesh, "a"), e.enroll(mesh, "b"), e.enroll(mesh, "c")
	e.dial(0, a, nil)
	e.dial(1, b, nil)
	rc := e.raw(0)
	rc.send(helloFrame(c, time.Now()))
	if f := rc.expectFrame("error"); f["code"] != "capacity" || f["message"] != "mesh at connection capacity" {
		t.Fatalf("got %v", f)
	}
	if ce := rc.expectClose(); ce.Code != 1008 || ce.Text != "capacity" {
		t.Fatalf("close %d %q", ce.Code, ce.Text)
	}
	if got := counter(t, e.replicas[0], "broker_connections_rejected_total", "reason", "capacity"); got != 1 {
		t.Fatalf("capacity metric %v", got)
	}
}

// A.3-9 and the frame-level errors: the socket stays usable after each.
func TestFrameErrorsKeepSocketUsable(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) { c.MaxMessageBytes = 4096 })
	mesh := e.newMesh("Frames")
	alice := e.enroll(mesh, "alice")

	rc := e.raw(0)
	rc.send(map[string]any{"type": "list_peers"})
	if f := rc.expectFrame("error"); f["code"] != "no_hello" || f["message"] != "must send hello first" {
		t.Fatalf("pre-hello: %v", f)
	}
	rc.send(helloFrame(alice, time.Now()))
	rc.expectFrame("hello_ack")

	steps := []struct {
		name, frame, code string
	}{
		{"second hello", "", "already_authenticated"},
		{"not JSON", "{nope", "invalid_message"},
		{"no type", `{"x":1}`, "invalid_message"},
		{"unknown type", `{"type":"teleport"}`, "unknown_message_type"},
		{"send with bad priority", `{"type":"send","targetSpec":"*","priority":"urgent","nonce":"","ciphertext":""}`, "invalid_message"},
		{"send without ciphertext", `{"type":"send","targetSpec":"*","nonce":""}`, "invalid_message"},
	}
	for _, s := range steps {
		if s.frame == "" {
			rc.send(helloFrame(alice, time.Now()))
		} else {
			rc.send(s.frame)
		}
		if f := rc.expectFrame("error"); f["code"] != s.code {
			t.Fatalf("%s: code %v, want %s", s.name, f["code"], s.code)
		}
		rc.send(map[string]any{"type": "list_peers", "_reqId": s.name})
		if f := rc.expectFrame("peers_list"); f["_reqId"] != s.name {
			t.Fatalf("%s: socket not usable afterwards: %v", s.name, f)
		}
	}
	// A frame over MAX_MESSAGE_BYTES closes with 1009.
	rc.send(strings.Repeat("x", 5000))
	if ce := rc.expectClose(); ce.Code != 1009 {
		t.Fatalf("oversized frame: close %d %q", ce.Code, ce.Text)
	}
}

func TestHelloTimeout(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) { c.HelloTimeout = 200 * time.Millisecond })
	rc := e.raw(0)
	ce := rc.expectClose()
	if ce.Code != 1008 || ce.Text != "hello_timeout" {
		t.Fatalf("close %d %q, want 1008 hello_timeout", ce.Code, ce.Text)
	}
}

// A hello that arrived in time but waits for its admission turn (pacing,
// HELLO_CONCURRENCY) past the hello deadline is not late: it is answered
// once its turn comes. One that then fails without a close (invalid_message)
// is closed hello_timeout, since the deadline has passed.
func TestQueuedHelloIsNotLate(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) { c.HelloConcurrency, c.HelloTimeout = 1, 200*time.Millisecond })
	mesh := e.newMesh("Paced")
	alice := e.enroll(mesh, "alice")
	srv := e.replicas[0].srv

	release := srv.HoldHelloSlots(1)
	rc := e.raw(0)
	rc.send(helloFrame(alice, time.Now()))
	waitFor(t, 10*time.Second, "the hello deadline to pass while the hello is queued", func() bool { return srv.LateHellos() == 1 })
	release()
	rc.expectFrame("hello_ack")

	release = srv.HoldHelloSlots(1)
	bad := e.raw(0)
	f := helloFrame(alice, time.Now())
	delete(f, "pid")
	bad.send(f)
	waitFor(t, 10*time.Second, "the hello deadline to pass while the bad hello is queued", func() bool { return srv.LateHellos() == 1 })
	release()
	if m := bad.expectFrame("error"); m["code"] != "invalid_message" {
		t.Fatalf("error %v, want invalid_message", m)
	}
	if ce := bad.expectClose(); ce.Code != 1008 || ce.Text != "hello_timeout" {
		t.Fatalf("close %d %q, want 1008 hello_timeout", ce.Code, ce.Text)
	}
}

// A hello's audit event is awaited on the socket's read loop (its next
// send's message_sent lands after it) but not on an admission turn: with one
// turn and the audit outbox locked, a second member's hello is answered
// while the first member's peer_joined still waits (up to AuditWait) to
// commit.
func TestHelloAuditWaitFreesAdmission(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) { c.HelloConcurrency, c.AuditWait = 1, time.Minute })
	mesh := e.newMesh("Audited")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	e.holding("LOCK TABLE mesh.audit_outbox IN EXCLUSIVE MODE") // until the test ends
	a := e.raw(0)
	a.send(helloFrame(alice, time.Now()))
	a.expectFrame("hello_ack")
	b := e.raw(0)
	b.send(helloFrame(bob, time.Now()))
	b.expectFrame("hello_ack") // before the change: after alice's audit wait (a minute here)
}

func TestHelloAckIsFirstFrame(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("First")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	// Queue DMs for bob while he is offline, then connect raw.
	for i := 0; i < 3; i++ {
		ack, err := a.Send(context.Background(), bob.key.Pubkey, "now", []byte("queued"))
		if err != nil || !ack.Queued {
			t.Fatalf("send: %+v %v", ack, err)
		}
	}
	rc := e.raw(0)
	rc.send(helloFrame(bob, time.Now()))
	m, ce, err := rc.next(5 * time.Second)
	if err != nil || ce != nil {
		t.Fatalf("first frame: %v %v", ce, err)
	}
	if m["type"] != "hello_ack" {
		t.Fatalf("first frame is %v, want hello_ack", m["type"])
	}
	for i := 0; i < 3; i++ {
		rc.expectFrame("push")
	}
}

// A full mesh still lets a member reattach its own grace lease (it counts
// toward the cap), on any replica; a newcomer is refused.
func TestReattachAtCapacity(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config) { c.MaxConnectionsPerMesh = 1; c.Grace = time.Minute })
	mesh := e.newMesh("Full")
	bob, carol := e.enroll(mesh, "bob"), e.enroll(mesh, "carol")
	b := e.dial(0, bob, func(c *client.Config) { c.SessionID = "bob-1" })
	presence := b.HelloAck().PresenceID
	_ = b.Close()
	waitFor(t, 5*time.Second, "lease", func() bool {
		ps, _ := e.st.ListPeers(context.Background(), mesh.ID)
		return len(ps) == 1 && ps[0].LeaseUntil != nil
	})
	rc := e.raw(1)
	rc.send(helloFrame(carol, time.Now()))
	if f := rc.expectFrame("error"); f["code"] != "capacity" {
		t.Fatalf("newcomer at capacity: %v", f)
	}
	b2 := e.dial(1, bob, func(c *client.Config) { c.SessionID = "bob-1" })
	if b2.HelloAck().PresenceID != presence {
		t.Fatalf("reattach at capacity made presence %s, want %s", b2.HelloAck().PresenceID, presence)
	}
}
