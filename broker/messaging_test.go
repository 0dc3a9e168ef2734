package broker_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/testenv"
)

func sendOK(t *testing.T, c *client.Client, target string, prio meshd.Priority, text string) string {
	t.Helper()
	ack, err := c.Send(context.Background(), target, prio, []byte(text))
	if err != nil {
		t.Fatalf("send to %s: %v", target, err)
	}
	if !ack.Queued || ack.MessageID == "" {
		t.Fatalf("send to %s: ack %+v", target, ack)
	}
	return ack.MessageID
}

func sendRejected(t *testing.T, c *client.Client, target string, prio meshd.Priority, text, wantErr string) {
	t.Helper()
	ack, _ := c.Send(context.Background(), target, prio, []byte(text)) // a rejection is also an error
	if ack.Queued || ack.MessageID != "" || ack.Error != wantErr {
		t.Fatalf("ack %+v, want queued:false error %q", ack, wantErr)
	}
}

func execSQL(t testing.TB, dsn, sql string, args ...any) {
	t.Helper()
	testenv.Exec(t, dsn, sql, args...)
}

// A DM from a peer on replica 0 reaches a peer on replica 1 and decrypts;
// the push carries the B.4.3 fields plus the A.3-13 sender fields.
func TestDirectMessageAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("DM")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(1, bob, nil)
	id := sendOK(t, a, bob.key.Pubkey, meshd.PriorityNow, "hello bob")
	m := recvPush(t, b, 5*time.Second)
	if string(m.Plaintext) != "hello bob" || m.DecryptErr != nil {
		t.Fatalf("plaintext %q err %v", m.Plaintext, m.DecryptErr)
	}
	p := m.Push
	if p.MessageID != id || p.MeshID != mesh.ID || p.SenderPubkey != alice.key.Pubkey ||
		p.SenderMemberPubkey != alice.key.Pubkey || p.SenderMemberID != alice.member.ID || p.SenderName != "alice" || p.Priority != "now" {
		t.Fatalf("push %+v", p)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", p.CreatedAt); err != nil {
		t.Fatalf("createdAt %q: %v", p.CreatedAt, err)
	}
}

// A DM's replyToId reaches the recipient's push across replicas: online
// (the wake-up) and after a reconnect (the drain of the queued row).
// A replyToId longer than a message id could be is refused.
func TestDirectReplyToAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Reply")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(1, bob, nil)
	ctx := context.Background()
	first := sendOK(t, a, bob.key.Pubkey, meshd.PriorityNow, "question")
	if m := recvPush(t, b, 5*time.Second); m.Push.MessageID != first || m.Push.ReplyToID != "" {
		t.Fatalf("first push %+v", m.Push)
	}
	ack, err := b.SendReply(ctx, alice.key.Pubkey, meshd.PriorityNow, []byte("answer"), first)
	if err != nil || !ack.Queued {
		t.Fatalf("reply ack %+v err %v", ack, err)
	}
	if m := recvPush(t, a, 5*time.Second); string(m.Plaintext) != "answer" || m.Push.ReplyToID != first {
		t.Fatalf("online reply push %+v %q", m.Push, m.Plaintext)
	}
	// (A written push is marked delivered by a batch; closing before it
	// commits may redeliver it, which is not what this test is about.)
	waitFor(t, 5*time.Second, "the answer marked delivered", func() bool {
		return queryInt(t, e.dsn, `SELECT count(*) FROM mesh.message_queue WHERE id = $1 AND delivered_at IS NOT NULL`, ack.MessageID) == 1
	})
	// Alice goes away; bob's next reply waits in the queue and reaches her
	// on the other replica with its replyToId.
	_ = a.Close()
	ack, err = b.SendReply(ctx, alice.key.Pubkey, meshd.PriorityNext, []byte("and later"), first)
	if err != nil || !ack.Queued {
		t.Fatalf("offline reply ack %+v err %v", ack, err)
	}
	a2 := e.dial(1, alice, nil)
	if m := recvPush(t, a2, 5*time.Second); string(m.Plaintext) != "and later" || m.Push.ReplyToID != first || m.Push.MessageID != ack.MessageID {
		t.Fatalf("drained reply push %+v %q", m.Push, m.Plaintext)
	}
	// Hostile: a replyToId no message id could be.
	r := e.authed(0, e.enroll(mesh, "carol"))
	r.send(map[string]any{"type": "send", "id": "long", "targetSpec": alice.key.Pubkey, "priority": "now",
		"nonce": "bg==", "ciphertext": "bg==", "replyToId": strings.Repeat("x", 129)})
	if m := r.expectFrame("error"); m["code"] != "invalid_message" || m["message"] != "send: replyToId longer than 128 bytes" {
		t.Fatalf("long replyToId: %v", m)
	}
}

// Broadcast and group multicast reach eligible peers on every replica and
// never the sender's member; `@a` reaches a peer in `a/b` (A.1).
func TestMulticastAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Cast")
	alice, bob, carol := e.enroll(mesh, "alice"), e.enroll(mesh, "bob"), e.enroll(mesh, "carol")
	a := e.dial(0, alice, nil)
	b := e.dial(1, bob, func(c *client.Config) { c.Groups = []meshd.Group{{Name: "eng/backend"}} })
	c := e.dial(0, carol, func(c *client.Config) { c.Groups = []meshd.Group{{Name: "design"}} })

	sendOK(t, a, "*", meshd.PriorityNext, "to everyone")
	for _, cl := range []*client.Client{b, c} {
		if m := recvPush(t, cl, 5*time.Second); string(m.Plaintext) != "to everyone" || m.Push.SenderMemberID != alice.member.ID {
			t.Fatalf("broadcast push %+v", m.Push)
		}
	}
	sendOK(t, a, "@eng", meshd.PriorityNext, "to eng")
	if m := recvPush(t, b, 5*time.Second); string(m.Plaintext) != "to eng" {
		t.Fatalf("group push %q", m.Plaintext)
	}
	sendOK(t, a, "@all", meshd.PriorityNext, "to all")
	for _, cl := range []*client.Client{b, c} {
		if m := recvPush(t, cl, 5*time.Second); string(m.Plaintext) != "to all" {
			t.Fatalf("@all push %q (carol must not have seen @eng)", m.Plaintext)
		}
	}
	select {
	case m := <-a.Pushes():
		if m.Push.Subtype != "system" {
			t.Fatalf("sender received its own broadcast: %+v", m.Push)
		}
	case <-time.After(300 * time.Millisecond):
	}
}

func TestPeersListAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Peers")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	e.dial(1, bob, func(c *client.Config) { c.Hostname = "bobs-laptop" })
	peers, err := a.ListPeers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, p := range peers {
		names[p.DisplayName] = p.Pubkey
		if p.PeerRole != "control-plane" || p.Status != "idle" || p.ConnectedAt == "" {
			t.Errorf("peer %+v", p)
		}
		if p.DisplayName == "bob" && p.Hostname != "bobs-laptop" {
			t.Errorf("bob's hostname from the other replica: %q", p.Hostname)
		}
	}
	if names["alice"] != alice.key.Pubkey || names["bob"] != bob.key.Pubkey || len(peers) != 2 {
		t.Fatalf("peers %v", names)
	}
}

// The send rejections of B.4.1 and A.2/A.3-6, each an ack with queued:false,
// and the socket keeps working afterwards.
func TestSendRejections(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) { c.MaxMessageBytes = 2048 })
	mesh := e.newMesh("Reject")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	r := e.replicas[0]

	// An unknown topic (topics_test.go has the rest of topic sends).
	sendRejected(t, a, "#general", meshd.PriorityNext, "x", `topic_not_found: topic "general" not found`)
	zz := "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
	sendRejected(t, a, zz, meshd.PriorityNext, "x",
		"no connected peer for target (not online, or targetSpec is your own key without another session)")
	if got := counter(t, r, "broker_messages_rejected_total", "reason", "no_recipient"); got != 2 { // the topic, the key
		t.Fatalf("no_recipient metric %v", got)
	}
	// (send's own size check, B.4.1 step 2, can never fire before the
	// frame limit: the frame holds those strings plus its JSON. An
	// oversized frame closes with 1009 — TestFrameErrorsKeepSocketUsable.)
	// Bob blocks alice's DMs: rejected before queueing (B.7).
	execSQL(t, e.dsn, `UPDATE mesh.member SET peer_grants = jsonb_build_object($1::text, '["read"]'::jsonb) WHERE id = $2`, alice.key.Pubkey, bob.member.ID)
	sendRejected(t, a, bob.key.Pubkey, meshd.PriorityNext, "x", "blocked by recipient grants (sender lacks dm capability)")
	if got := counter(t, r, "broker_messages_dropped_by_grant_total", "cap", "dm"); got != 1 {
		t.Fatalf("dropped_by_grant metric %v", got)
	}
	// A DM to an offline member is queued (A.3-6) and delivered on connect.
	carol := e.enroll(mesh, "carol")
	sendOK(t, a, carol.key.Pubkey, meshd.PriorityNext, "for later")
	c := e.dial(0, carol, nil)
	if m := recvPush(t, c, 5*time.Second); string(m.Plaintext) != "for later" {
		t.Fatalf("queued DM %q", m.Plaintext)
	}
}

// Sends pipelined on one socket share the group commit, which looks up
// their recipients together (delivery.go runEnqueues): each send still gets
// its own answer — the refusals route gives, in place, and a queued ack for
// the rest — and only the admitted rows reach their recipients, in order.
func TestPipelinedSendsGetPerSendResults(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Mixed")
	alice, bob, carol := e.enroll(mesh, "alice"), e.enroll(mesh, "bob"), e.enroll(mesh, "carol")
	execSQL(t, e.dsn, `UPDATE mesh.member SET peer_grants = jsonb_build_object($1::text, '["read"]'::jsonb) WHERE id = $2`, alice.key.Pubkey, carol.member.ID)
	b := e.dial(0, bob, nil)
	a := e.raw(0)
	a.send(helloFrame(alice, time.Now()))
	a.expectFrame("hello_ack")
	zz := strings.Repeat("z", 64)
	sends := []struct{ target, wantErr string }{
		{bob.key.Pubkey, ""},
		{zz, "no connected peer for target (not online, or targetSpec is your own key without another session)"},
		{carol.key.Pubkey, "blocked by recipient grants (sender lacks dm capability)"},
		{bob.key.Pubkey, ""},
		{"*", ""},
		{carol.key.Pubkey, "blocked by recipient grants (sender lacks dm capability)"},
		{bob.key.Pubkey, ""},
	}
	for i, sd := range sends { // no waiting between them
		a.send(map[string]any{"type": "send", "id": fmt.Sprint("s", i), "targetSpec": sd.target, "priority": "now",
			"nonce":      base64.StdEncoding.EncodeToString(make([]byte, 24)),
			"ciphertext": base64.StdEncoding.EncodeToString([]byte(fmt.Sprint("c", i)))})
	}
	acks := map[string]map[string]any{}
	for len(acks) < len(sends) {
		m := a.expectFrame("ack")
		acks[fmt.Sprint(m["id"])] = m
	}
	for i, sd := range sends {
		m := acks[fmt.Sprint("s", i)]
		queued, _ := m["queued"].(bool)
		msgID, _ := m["messageId"].(string)
		errText, _ := m["error"].(string)
		if queued != (sd.wantErr == "") || errText != sd.wantErr || (msgID != "") != queued {
			t.Errorf("send %d to %.8s: ack %v, want error %q", i, sd.target, m, sd.wantErr)
		}
	}
	r := e.replicas[0]
	if got := counter(t, r, "broker_messages_rejected_total", "reason", "no_recipient"); got != 1 {
		t.Errorf("no_recipient metric %v, want 1", got)
	}
	if got := counter(t, r, "broker_messages_dropped_by_grant_total", "cap", "dm"); got != 2 {
		t.Errorf("dropped_by_grant metric %v, want 2", got)
	}
	// Bob gets the three DMs in send order, and the broadcast (its own
	// road, the mesh topic: not ordered with the DMs). The raw ciphertexts
	// do not decrypt: the broker never reads them.
	var dms []string
	var broadcast string
	for len(dms) < 3 || broadcast == "" {
		m := recvPush(t, b, 5*time.Second)
		ct, _ := base64.StdEncoding.DecodeString(m.Push.Ciphertext)
		switch {
		case m.System():
		case string(ct) == "c4":
			broadcast = string(ct)
		default:
			dms = append(dms, string(ct))
		}
	}
	if fmt.Sprint(dms) != "[c0 c3 c6]" || broadcast != "c4" {
		t.Fatalf("bob's pushes: DMs %v, broadcast %q; want [c0 c3 c6], c4", dms, broadcast)
	}
	if n := testenv.QueryInt(t, e.dsn, "SELECT count(*) FROM mesh.message_queue WHERE mesh_id = $1", mesh.ID); n != 4 {
		t.Fatalf("queue rows %d, want 4: a refused send stores nothing", n)
	}
}

func TestSendRateLimit(t *testing.T) {
	// Upstream's defaults (burst 10, 60/min) on a frozen clock, so no token
	// refills however slowly the sends run.
	frozen := time.Now()
	e := newEnv(t, 1, func(c *broker.Config) { c.Now = func() time.Time { return frozen } })
	mesh := e.newMesh("Rate")
	alice := e.enroll(mesh, "alice")
	e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	for i := 0; i < 10; i++ {
		sendOK(t, a, "*", meshd.PriorityNext, "ok")
	}
	ack, _ := a.Send(context.Background(), "*", meshd.PriorityNext, []byte("too many"))
	if ack.Queued || ack.MessageID != "" || ack.Error != "rate_limit: max 60 msg/min (burst 10) — slow down" {
		t.Fatalf("11th send: %+v", ack)
	}
	if got := counter(t, e.replicas[0], "broker_messages_rejected_total", "reason", "rate_limit"); got != 1 {
		t.Fatalf("rate_limit metric %v", got)
	}
}

// B.4.2: next/low wait while the recipient works; now goes through.
func TestPriorityGating(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Gate")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(0, bob, nil)
	ack := b.HelloAck()
	execSQL(t, e.dsn, `UPDATE mesh.presence SET status='working', status_source='hook', status_updated_at=now() WHERE id=$1`, ack.PresenceID)
	sendOK(t, a, bob.key.Pubkey, meshd.PriorityNext, "held")
	sendOK(t, a, bob.key.Pubkey, meshd.PriorityNow, "urgent")
	if m := recvPush(t, b, 5*time.Second); string(m.Plaintext) != "urgent" {
		t.Fatalf("first push %q, want the now message", m.Plaintext)
	}
	select {
	case m := <-b.Pushes():
		if m.Push.Subtype != "system" {
			t.Fatalf("next message delivered while working: %q", m.Plaintext)
		}
	case <-time.After(500 * time.Millisecond):
	}
	// Idle again (hook gone stale): the held message drains on the next wake.
	execSQL(t, e.dsn, `UPDATE mesh.presence SET status='idle', status_source='hook', status_updated_at=now() WHERE id=$1`, ack.PresenceID)
	if m := recvPush(t, b, 5*time.Second); string(m.Plaintext) != "held" {
		t.Fatalf("held message %q", m.Plaintext)
	}
}

// A row whose wake-up was lost (inserted without any NATS message) is
// delivered by the periodic re-drain: NATS is never the source of truth.
func TestRedrainRecoversLostWakeup(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Lost")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	b := e.dial(0, bob, nil)
	q := &meshd.QueuedMessage{MeshID: mesh.ID, SenderMemberID: alice.member.ID, TargetSpec: bob.key.Pubkey,
		Priority: meshd.PriorityNow, Nonce: "", Ciphertext: "bG9zdA=="}
	if err := e.st.Enqueue(context.Background(), q, false); err != nil {
		t.Fatal(err)
	}
	m := recvPush(t, b, 5*time.Second)
	if m.Push.MessageID != q.ID {
		t.Fatalf("push %+v", m.Push)
	}
}

// A.3-4/A.3-5: an acking client that does not ack gets the row again after
// the claim lease, without any new send; acking stops redelivery. A client
// that never acks gets each row once (marked delivered on write).
func TestAtLeastOnceForAckingClients(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) { c.ClaimLease = 500 * time.Millisecond })
	mesh := e.newMesh("Lease")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)

	// Raw acking client that never acks.
	rc := e.raw(0)
	f := helloFrame(bob, time.Now())
	f["capabilities"] = []string{"client_ack"}
	rc.send(f)
	rc.expectFrame("hello_ack")
	id := sendOK(t, a, bob.key.Pubkey, meshd.PriorityNow, "again")
	first := rc.expectFrame("push")
	second := rc.expectFrame("push")
	if first["messageId"] != id || second["messageId"] != id {
		t.Fatalf("redelivery ids %v %v, want %s", first["messageId"], second["messageId"], id)
	}
	rc.send(map[string]any{"type": "client_ack", "brokerMessageId": id})
	time.Sleep(1500 * time.Millisecond)
	for {
		m, _, err := rc.next(200 * time.Millisecond)
		if err != nil {
			break
		}
		if m["type"] == "push" && m["messageId"] == id {
			t.Fatal("redelivered after client_ack")
		}
	}
	var delivered bool
	ctx := context.Background()
	row, err := e.st.FindMessage(ctx, mesh.ID, id)
	if err != nil {
		t.Fatal(err)
	}
	delivered = row.DeliveredAt != nil
	if !delivered {
		t.Fatal("acked row not marked delivered")
	}
}

func TestLegacyClientDeliveredOnWrite(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) { c.ClaimLease = 300 * time.Millisecond })
	mesh := e.newMesh("Legacy")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(0, bob, nil) // AckPushes false: a legacy client
	id := sendOK(t, a, bob.key.Pubkey, meshd.PriorityNow, "once")
	recvPush(t, b, 5*time.Second)
	time.Sleep(time.Second)
	select {
	case m := <-b.Pushes():
		if m.Push.Subtype != "system" {
			t.Fatalf("legacy client got a re-push %s", m.Push.MessageID)
		}
	default:
	}
	st, err := a.MessageStatus(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Delivered || st.DeliveredAt == nil || len(st.Recipients) != 1 || st.Recipients[0].Status != "delivered" {
		t.Fatalf("message_status %+v", st)
	}
}

func TestMessageStatusErrors(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Status")
	alice := e.enroll(mesh, "alice")
	rc := e.raw(0)
	rc.send(helloFrame(alice, time.Now()))
	rc.expectFrame("hello_ack")
	for _, tc := range []struct{ id, code, msg string }{
		{"short", "invalid_argument", "messageId must be 8-32 base62 chars (got 5)"},
		{"not-base62!", "invalid_argument", "messageId must be 8-32 base62 chars (got 11)"},
		{"abcdefgh12", "not_found", "message not found"},
	} {
		rc.send(map[string]any{"type": "message_status", "messageId": tc.id, "_reqId": tc.id})
		f := rc.expectFrame("error")
		if f["code"] != tc.code || f["message"] != tc.msg || f["_reqId"] != tc.id {
			t.Fatalf("%s: %v", tc.id, f)
		}
	}
}

// Many DMs sent as fast as possible arrive exactly once and in order.
func TestBurstExactlyOnceInOrder(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config) { c.SendBurst = 1e6; c.SendPerMinute = 1e6 })
	mesh := e.newMesh("Burst")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(1, bob, func(c *client.Config) { c.AckPushes = true })
	const n = 300
	go func() {
		for i := 0; i < n; i++ {
			if _, err := a.Send(context.Background(), bob.key.Pubkey, meshd.PriorityNow, []byte(fmt.Sprint(i))); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		m := recvPush(t, b, 10*time.Second)
		if string(m.Plaintext) != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q", i, m.Plaintext)
		}
	}
	select {
	case m := <-b.Pushes():
		if m.Push.Subtype != "system" {
			t.Fatalf("extra push %q", m.Plaintext)
		}
	case <-time.After(500 * time.Millisecond):
	}
}
