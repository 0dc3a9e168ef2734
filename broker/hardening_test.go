package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
)

// expectRejected asserts the error frame code and the close frame of a
// handshake rejection.
func expectRejected(t *testing.T, rc *rawConn, code string, closeCode int, closeText string) {
	t.Helper()
	m := rc.expectFrame("error")
	if m["code"] != code {
		t.Fatalf("error code = %v, want %s (%v)", m["code"], code, m["message"])
	}
	ce := rc.expectClose()
	if ce.Code != closeCode || ce.Text != closeText {
		t.Fatalf("close = %d %q, want %d %q", ce.Code, ce.Text, closeCode, closeText)
	}
}

// TestHelloReplayRefusedAcrossReplicas replays a captured hello and a
// captured session_hello on the other replica, with different unsigned
// fields: both are refused 1008 replayed and counted (issue 12 item 5).
func TestHelloReplayRefusedAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Replay")
	alice := e.enroll(mesh, "alice")

	hello := helloFrame(alice, time.Now())
	a := e.raw(0)
	a.send(hello)
	a.expectFrame("hello_ack")

	replay := map[string]any{}
	for k, v := range hello {
		replay[k] = v
	}
	replay["sessionId"], replay["cwd"], replay["displayName"] = "sess-evil", "/evil", "mallory"
	b := e.raw(1)
	b.send(replay)
	expectRejected(t, b, "replayed", 1008, "replayed")
	if got := counter(t, e.replicas[1], "broker_connections_rejected_total", "reason", "replayed"); got != 1 {
		t.Fatalf("replayed metric = %v, want 1", got)
	}

	sess := client.GenerateIdentity()
	sh := sessionHelloFrame(alice, sess, time.Now(), time.Hour)
	s1 := e.raw(1)
	s1.send(sh)
	s1.expectFrame("hello_ack")
	sh["sessionId"], sh["cwd"] = "sess-evil-2", "/evil"
	s2 := e.raw(0)
	s2.send(sh)
	expectRejected(t, s2, "replayed", 1008, "replayed")
	if got := counter(t, e.replicas[0], "broker_connections_rejected_total", "reason", "replayed"); got != 1 {
		t.Fatalf("replayed metric on replica 0 = %v, want 1", got)
	}

	// A fresh signature (new timestamp) from the same member still works.
	c := e.raw(1)
	c.send(helloFrame(alice, time.Now().Add(time.Millisecond)))
	c.expectFrame("hello_ack")
}

// helloCycle connects id on replica i with sessionID, waits for hello_ack,
// closes the socket and waits until its presence is in its grace lease.
func helloCycle(t *testing.T, e *env, i int, id identity, sessionID string, at time.Time) {
	t.Helper()
	f := helloFrame(id, at)
	f["sessionId"] = sessionID
	rc := e.raw(i)
	rc.send(f)
	ack := rc.expectFrame("hello_ack")
	_ = rc.ws.Close()
	pid := ack["presenceId"].(string)
	waitFor(t, 10*time.Second, "grace lease of "+sessionID, func() bool {
		return queryInt(t, e.dsn, "SELECT count(*) FROM mesh.presence WHERE id = $1 AND lease_until IS NOT NULL", pid) == 1
	})
}

func (e *env) enrollAs(mesh meshd.Mesh, name, userID, role string) identity {
	e.t.Helper()
	key := client.GenerateIdentity()
	m := meshd.Member{MeshID: mesh.ID, UserID: userID, Pubkey: key.Pubkey, DisplayName: name, Role: role}
	if err := e.st.CreateMember(context.Background(), &m); err != nil {
		e.t.Fatal(err)
	}
	return identity{mesh: mesh, member: m, key: key}
}

// TestLeaseFloodCannotLockOutOthers is issue 12 item 2: members cycling
// hello/close with fresh session ids on both replicas hold at most
// MAX_CONNECTIONS_PER_MEMBER presences each (their oldest grace lease gives
// way), and when their leases fill the mesh the owner and an admin still
// get in, evicting others' leases; a member whose presences are all online
// is refused capacity (member_capacity).
func TestLeaseFloodCannotLockOutOthers(t *testing.T) {
	const perMember, perMesh = 3, 6
	e := newEnv(t, 2, func(c *broker.Config) { c.MaxConnectionsPerMesh, c.MaxConnectionsPerMember = perMesh, perMember })
	mesh := e.newMesh("Flood")
	mallory, eve := e.enroll(mesh, "mallory"), e.enroll(mesh, "eve")
	owner := e.enrollAs(mesh, "owner", mesh.OwnerUserID, "member")
	admin := e.enrollAs(mesh, "admin", "user-admin", "admin")
	alice := e.enroll(mesh, "alice")

	base := time.Now()
	for i := 0; i < 2*perMember; i++ {
		helloCycle(t, e, i%2, mallory, fmt.Sprintf("flood-m-%d", i), base.Add(time.Duration(i)*time.Millisecond))
		helloCycle(t, e, (i+1)%2, eve, fmt.Sprintf("flood-e-%d", i), base.Add(time.Duration(i)*time.Millisecond))
	}
	for _, id := range []identity{mallory, eve} {
		n := queryInt(t, e.dsn, "SELECT count(*) FROM mesh.presence WHERE member_id = $1 AND disconnected_at IS NULL", id.member.ID)
		if n != perMember {
			t.Fatalf("%s holds %d presences, want %d (MAX_CONNECTIONS_PER_MEMBER)", id.member.DisplayName, n, perMember)
		}
	}
	// The mesh is full of others' grace leases: the owner and an admin
	// still connect, each evicting the oldest lease.
	e.dial(0, owner, nil)
	e.dial(1, admin, nil)
	if n := queryInt(t, e.dsn, "SELECT count(*) FROM mesh.presence WHERE mesh_id = $1 AND disconnected_at IS NULL", mesh.ID); n != perMesh {
		t.Fatalf("live presences = %d, want %d", n, perMesh)
	}
	// An ordinary member without a lease of its own gets the mesh cap.
	rc := e.raw(0)
	rc.send(helloFrame(alice, time.Now()))
	expectRejected(t, rc, "capacity", 1008, "capacity")

	// A member whose presences are all online is refused at its own cap.
	e2 := newEnv(t, 2, func(c *broker.Config) { c.MaxConnectionsPerMember = 2 })
	mesh2 := e2.newMesh("Online")
	bob := e2.enroll(mesh2, "bob")
	for i := 0; i < 2; i++ {
		e2.dial(i, bob, func(c *client.Config) { c.SessionID = fmt.Sprintf("bob-%d", i) })
	}
	rc = e2.raw(1)
	f := helloFrame(bob, time.Now())
	f["sessionId"] = "bob-new"
	rc.send(f)
	expectRejected(t, rc, "capacity", 1008, "capacity")
	if got := counter(t, e2.replicas[1], "broker_connections_rejected_total", "reason", "member_capacity"); got != 1 {
		t.Fatalf("member_capacity metric = %v, want 1", got)
	}
}

// TestHelloRateLimitedPerMember: verified hellos of one member beyond the
// bucket close 1013 rate_limited; forged hellos do not spend the bucket.
func TestHelloRateLimitedPerMember(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) { c.HelloBurst, c.HelloPerMinute = 3, 0.001 })
	mesh := e.newMesh("Rate")
	bob := e.enroll(mesh, "bob")
	// Forged hellos naming bob's key (bad signature) cost bob nothing.
	for i := 0; i < 5; i++ {
		f := helloFrame(bob, time.Now())
		f["signature"] = strings.Repeat("0", 128)
		rc := e.raw(0)
		rc.send(f)
		expectRejected(t, rc, "bad_signature", 1008, "bad_signature")
	}
	base := time.Now()
	for i := 0; i < 3; i++ {
		f := helloFrame(bob, base.Add(time.Duration(i)*time.Millisecond))
		f["sessionId"] = fmt.Sprintf("rate-%d", i)
		rc := e.raw(0)
		rc.send(f)
		rc.expectFrame("hello_ack")
	}
	f := helloFrame(bob, base.Add(3*time.Millisecond))
	f["sessionId"] = "rate-3"
	rc := e.raw(0)
	rc.send(f)
	expectRejected(t, rc, "rate_limited", 1013, "rate_limited")
	if got := counter(t, e.replicas[0], "broker_connections_rejected_total", "reason", "rate_limited"); got != 1 {
		t.Fatalf("rate_limited metric = %v, want 1", got)
	}
}

// TestReattachDeadNodeLeaseAtCapacity is issue 11 item 4: a full mesh whose
// presences belong to a replica that died (kill -9: online rows, no lease,
// no heartbeat yet noticed) lets each member take over its own presence at
// once — same session id (hello) or same session pubkey (session_hello) —
// while genuinely new sessions still get capacity.
func TestReattachDeadNodeLeaseAtCapacity(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config) { c.MaxConnectionsPerMesh = 3 })
	ctx := context.Background()
	mesh := e.newMesh("Dead")
	alice, bob, carol := e.enroll(mesh, "alice"), e.enroll(mesh, "bob"), e.enroll(mesh, "carol")
	bobSess := client.GenerateIdentity()
	dead := func(id identity, sessionID, sessionPubkey string) {
		_, err := e.st.Attach(ctx, meshd.AttachRequest{Presence: meshd.Presence{
			MeshID: mesh.ID, MemberID: id.member.ID, SessionID: sessionID, SessionPubkey: sessionPubkey,
			PID: 1, CWD: "/w", NodeID: "node-killed", SocketID: "sock-" + sessionID, Role: meshd.RoleSession,
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	dead(alice, "sess-alice", "")
	dead(bob, "sess-bob", bobSess.Pubkey)
	dead(carol, "sess-carol", "")

	// A new session of alice counts against the cap.
	rc := e.raw(0)
	f := helloFrame(alice, time.Now())
	f["sessionId"] = "sess-alice-new"
	rc.send(f)
	expectRejected(t, rc, "capacity", 1008, "capacity")

	// Alice's own session (hello, same session id) takes over at once.
	rc = e.raw(1)
	rc.send(helloFrame(alice, time.Now().Add(time.Millisecond)))
	rc.expectFrame("hello_ack")
	// Bob's session key (session_hello) takes over at once.
	rc = e.raw(0)
	sh := sessionHelloFrame(bob, bobSess, time.Now(), time.Hour)
	rc.send(sh)
	rc.expectFrame("hello_ack")
	if n := queryInt(t, e.dsn, "SELECT count(*) FROM mesh.presence WHERE mesh_id = $1 AND disconnected_at IS NULL", mesh.ID); n != 3 {
		t.Fatalf("live presences = %d, want 3", n)
	}
	// A member with no presence at all still gets capacity.
	dave := e.enroll(mesh, "dave")
	rc = e.raw(1)
	rc.send(helloFrame(dave, time.Now()))
	expectRejected(t, rc, "capacity", 1008, "capacity")
}

// TestArchivedMeshClosedWithoutFanout: a replica that never got the
// mesh_archived message (here: the mesh is archived in the database only)
// still closes the mesh's sockets 4003 mesh_archived on its next sweep, and
// Attach refuses the archived mesh.
func TestArchivedMeshClosedWithoutFanout(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Quiet")
	alice := e.enroll(mesh, "alice")
	rc := e.raw(1)
	rc.send(helloFrame(alice, time.Now()))
	rc.expectFrame("hello_ack")
	if err := e.st.ArchiveMesh(context.Background(), mesh.ID); err != nil {
		t.Fatal(err)
	}
	if ce := rc.expectClose(); ce.Code != 4003 || ce.Text != "mesh_archived" {
		t.Fatalf("closed %d %q, want 4003 mesh_archived", ce.Code, ce.Text)
	}
	_, err := e.st.Attach(context.Background(), meshd.AttachRequest{Presence: meshd.Presence{
		MeshID: mesh.ID, MemberID: alice.member.ID, SessionID: "late", PID: 1, CWD: "/w", NodeID: "n", SocketID: "s"}})
	if !errors.Is(err, meshd.ErrMeshArchived) {
		t.Fatalf("Attach on an archived mesh: %v, want ErrMeshArchived", err)
	}
}

// TestSmallLeaksAndGaps is issue 12 item 8 on the socket side, across two
// replicas: message_status answers only the sender and the recipient of a
// DM; a frame with a NUL string is refused invalid_string (never SQL text);
// "@" and "@@x" are invalid_target; displayName > 100 chars and summaries
// > 4 KiB are refused; presence verbs are rate-limited.
func TestSmallLeaksAndGaps(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config) { c.SendBurst, c.SendPerMinute = 3, 0.001 })
	mesh := e.newMesh("Gaps")
	alice, bob, carol := e.enroll(mesh, "alice"), e.enroll(mesh, "bob"), e.enroll(mesh, "carol")
	a := e.dial(0, alice, nil)
	ack, err := a.Send(context.Background(), bob.key.Pubkey, meshd.PriorityNow, []byte("secret"))
	if err != nil || !ack.Queued {
		t.Fatalf("send: %+v %v", ack, err)
	}
	status := func(i int, id identity) string {
		rc := e.raw(i)
		rc.send(helloFrame(id, time.Now()))
		rc.expectFrame("hello_ack")
		rc.send(map[string]any{"type": "message_status", "messageId": ack.MessageID, "_reqId": "q"})
		for {
			m, ce, err := rc.next(5 * time.Second)
			if err != nil || ce != nil {
				t.Fatalf("message_status: %v %v", ce, err)
			}
			switch m["type"] {
			case "message_status_result":
				return "result"
			case "error":
				return m["code"].(string)
			}
		}
	}
	if got := status(1, carol); got != "not_found" {
		t.Fatalf("carol's message_status = %s, want not_found", got)
	}
	if got := status(1, bob); got != "result" {
		t.Fatalf("bob's message_status = %s, want result", got)
	}

	// Targets "@" and "@@x" (the send bucket holds 3: the DM and these two).
	sendRejected(t, a, "@", meshd.PriorityNext, "x", "invalid_target: @ must be followed by a group name")
	sendRejected(t, a, "@@x", meshd.PriorityNext, "x", "invalid_target: @ must be followed by a group name")

	rc := e.raw(1)
	// NUL before hello (here in cwd, which used to reach SQL) and after.
	rc.send(`{"type":"hello","meshId":"m","cwd":"/tmp\u0000x","_reqId":"n1"}`)
	if m := rc.expectFrame("error"); m["code"] != "invalid_string" || m["_reqId"] != "n1" {
		t.Fatalf("NUL hello: %v", m)
	}
	long := helloFrame(carol, time.Now().Add(2*time.Millisecond))
	long["displayName"] = strings.Repeat("é", 101)
	rc.send(long)
	if m := rc.expectFrame("error"); m["code"] != "invalid_message" || !strings.Contains(m["message"].(string), "displayName longer than 100") {
		t.Fatalf("long displayName: %v", m)
	}
	rc.send(helloFrame(carol, time.Now().Add(3*time.Millisecond)))
	rc.expectFrame("hello_ack")
	rc.send(`{"type":"set_summary","summary":"a\u0000b","_reqId":"n2"}`)
	if m := rc.expectFrame("error"); m["code"] != "invalid_string" {
		t.Fatalf("NUL summary: %v", m)
	}
	rc.send(map[string]any{"type": "set_summary", "summary": strings.Repeat("s", 4097), "_reqId": "big"})
	if m := rc.expectFrame("error"); m["code"] != "invalid_message" || !strings.Contains(m["message"].(string), "longer than 4096") {
		t.Fatalf("big summary: %v", m)
	}
	// Presence verbs share a bucket of 3 × SEND_RATE_BURST = 9; the
	// oversized summary spent one.
	for i := 0; i < 8; i++ {
		rc.send(map[string]any{"type": "set_visible", "visible": true, "_reqId": fmt.Sprint("v", i)})
		rc.expectFrame("ack")
	}
	rc.send(map[string]any{"type": "set_profile", "title": "x", "_reqId": "limited"})
	if m := rc.expectFrame("error"); m["code"] != "rate_limited" || m["_reqId"] != "limited" {
		t.Fatalf("10th presence verb: %v", m)
	}
}
