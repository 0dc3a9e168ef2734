package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

type auditResult struct {
	Type    string `json:"type"`
	ReqID   string `json:"_reqId"`
	Total   int    `json:"total"`
	Entries []struct {
		ID        int64           `json:"id"`
		EventType string          `json:"eventType"`
		Actor     string          `json:"actor"`
		Payload   json.RawMessage `json:"payload"`
		Hash      string          `json:"hash"`
		CreatedAt string          `json:"createdAt"`
	} `json:"entries"`
}

type auditVerifyResult struct {
	Type     string `json:"type"`
	ReqID    string `json:"_reqId"`
	Valid    bool   `json:"valid"`
	Entries  int    `json:"entries"`
	BrokenAt *int64 `json:"brokenAt"`
}

func auditQuery(t *testing.T, c *client.Client, frame map[string]any) auditResult {
	t.Helper()
	frame["type"] = "audit_query"
	raw, err := c.Request(context.Background(), frame, "audit_result")
	if err != nil {
		t.Fatalf("audit_query: %v", err)
	}
	var r auditResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func auditVerify(t *testing.T, c *client.Client) auditVerifyResult {
	t.Helper()
	raw, err := c.Request(context.Background(), map[string]any{"type": "audit_verify"}, "audit_verify_result")
	if err != nil {
		t.Fatalf("audit_verify: %v", err)
	}
	var r auditVerifyResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.ReqID == "" {
		t.Fatalf("audit_verify_result without _reqId: %s", raw)
	}
	return r
}

func (e *env) sql(query string, args ...any) {
	e.t.Helper()
	conn, err := pgx.Connect(context.Background(), e.dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), query, args...); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
}

var isoMillis = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// A hello, a broadcast, a DM and a set_state are audited (B.8 "Events
// audited") and read back over WS by any member: newest first, actor names,
// payloads without any ciphertext, a chain that verifies and that detects
// tampering at the tampered row.
func TestAuditOverWebSocket(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Audit")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	other := e.enroll(e.newMesh("Elsewhere"), "carol")
	a := e.dial(0, alice, nil)
	b := e.dial(0, bob, nil)
	c := e.dial(0, other, nil)
	ctx := context.Background()
	// A round trip on each socket: its hello (and so its peer_joined) is done.
	for _, cl := range []*client.Client{a, b, c} {
		if _, err := cl.ListPeers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Send(ctx, "*", meshd.PriorityNext, []byte("secret broadcast")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, bob.key.Pubkey, meshd.PriorityNow, []byte("secret dm")); err != nil {
		t.Fatal(err)
	}
	if err := a.SendFrame(ctx, map[string]any{"type": "set_state", "key": "phase", "value": map[string]any{"n": 1.0, "tag": "<b>"}}); err != nil {
		t.Fatal(err)
	}

	// Frames of one socket are handled in order and audit_query first waits
	// for this replica's queued events of the mesh: no polling needed.
	r := auditQuery(t, a, map[string]any{})
	want := []struct{ event, actor, payload string }{
		{"state_set", "alice", `{"key":"phase","value":{"n":1,"tag":"<b>"}}`},
		{"message_sent", "alice", `{"priority":"now","targetSpec":"` + bob.key.Pubkey + `"}`},
		{"message_sent", "alice", `{"priority":"next","targetSpec":"*"}`},
		{"peer_joined", "bob", ""},
		{"peer_joined", "alice", ""},
	}
	if r.Total != len(want) || len(r.Entries) != len(want) {
		t.Fatalf("total %d, %d entries, want %d: %+v", r.Total, len(r.Entries), len(want), r)
	}
	for i, w := range want {
		got := r.Entries[i]
		if got.EventType != w.event || got.Actor != w.actor || len(got.Hash) != 64 || !isoMillis.MatchString(got.CreatedAt) {
			t.Errorf("entry %d: %+v, want %s by %s", i, got, w.event, w.actor)
		}
		if i > 0 && got.ID >= r.Entries[i-1].ID {
			t.Errorf("entry %d (id %d) is not older than entry %d (id %d)", i, got.ID, i-1, r.Entries[i-1].ID)
		}
		if c, err := wire.CanonicalJSONBytes(got.Payload); w.payload != "" && (err != nil || c != w.payload) {
			t.Errorf("entry %d payload %s, want %s", i, got.Payload, w.payload)
		}
		if p := string(got.Payload); strings.Contains(p, "secret") || strings.Contains(p, "iphertext") || strings.Contains(p, "nonce") {
			t.Errorf("entry %d payload carries message content: %s", i, p)
		}
	}
	var joined map[string]any
	_ = json.Unmarshal(r.Entries[4].Payload, &joined)
	if joined["pubkey"] != alice.key.Pubkey || joined["restored"] != false || joined["role"] != "control-plane" {
		t.Errorf("peer_joined payload %s", r.Entries[4].Payload)
	}

	t.Run("filter and paging", func(t *testing.T) {
		r := auditQuery(t, b, map[string]any{"eventType": "message_sent", "limit": 1, "offset": 1})
		if r.Total != 2 || len(r.Entries) != 1 || !strings.Contains(string(r.Entries[0].Payload), `"*"`) {
			t.Fatalf("%+v", r)
		}
		if r := auditQuery(t, b, map[string]any{"limit": 0}); len(r.Entries) != 1 {
			t.Fatalf("limit 0 is clamped to 1: %d entries", len(r.Entries))
		}
	})
	t.Run("another mesh sees only its own chain", func(t *testing.T) {
		r := auditQuery(t, c, map[string]any{})
		if r.Total != 1 || r.Entries[0].EventType != "peer_joined" || r.Entries[0].Actor != "carol" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("verify", func(t *testing.T) {
		if v := auditVerify(t, b); !v.Valid || v.Entries != 5 || v.BrokenAt != nil {
			t.Fatalf("%+v", v)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		r := e.replicas[0]
		if n := auditEventsCounted(t, 6, r); n != 6 {
			t.Errorf("broker_audit_events_total %v, want 6", n)
		}
		for _, reason := range []string{"write_failed", "invalid_payload"} {
			if n := counter(t, r, "broker_audit_dropped_total", "reason", reason); n != 0 {
				t.Errorf("dropped %s = %v", reason, n)
			}
		}
	})
	t.Run("tampering is detected at the tampered row", func(t *testing.T) {
		tampered := r.Entries[2].ID // the broadcast's message_sent
		e.sql(`UPDATE mesh.audit_log SET payload = jsonb_set(payload, '{priority}', '"now"') WHERE id = $1`, tampered)
		v := auditVerify(t, a)
		if v.Valid || v.Entries != 5 || v.BrokenAt == nil || *v.BrokenAt != tampered {
			t.Fatalf("%+v, want broken at %d", v, tampered)
		}
	})
}

// Failures answer with the verb's error code, and the socket stays usable.
func TestAuditErrors(t *testing.T) {
	e := newEnv(t, 1, nil)
	id := e.enroll(e.newMesh("AuditErr"), "dana")
	c := e.dial(0, id, nil)
	ctx := context.Background()

	_, err := c.Request(ctx, map[string]any{"type": "audit_query", "limit": "ten"}, "audit_result")
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != "audit_query_error" {
		t.Fatalf("bad limit: %v", err)
	}
	if r := auditQuery(t, c, map[string]any{"limit": 5}); r.Total != 1 {
		t.Fatalf("socket unusable after the error: %+v", r)
	}

	e.sql(`ALTER TABLE mesh.audit_log RENAME TO audit_log_away`)
	_, err = c.Request(ctx, map[string]any{"type": "audit_query"}, "audit_result")
	if !errors.As(err, &se) || se.Code != "audit_query_error" {
		t.Fatalf("store failure on query: %v", err)
	}
	_, err = c.Request(ctx, map[string]any{"type": "audit_verify"}, "audit_verify_result")
	if !errors.As(err, &se) || se.Code != "audit_verify_error" {
		t.Fatalf("store failure on verify: %v", err)
	}
	e.sql(`ALTER TABLE mesh.audit_log_away RENAME TO audit_log`)
	if v := auditVerify(t, c); !v.Valid || v.Entries != 1 {
		t.Fatalf("after recovery: %+v", v)
	}

	raw := e.raw(0)
	raw.send(map[string]any{"type": "audit_verify", "_reqId": "r1"})
	if f := raw.expectFrame("error"); f["code"] != "no_hello" {
		t.Fatalf("before hello: %v", f)
	}
}

// Two replicas audit concurrent sends of one mesh into one linear chain.
func TestAuditTwoReplicasOneChain(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config) { c.SendBurst, c.SendPerMinute = 1e6, 1e9 })
	mesh := e.newMesh("AuditHA")
	const clients, sends = 6, 50
	var cls []*client.Client
	for i := 0; i < clients; i++ {
		cls = append(cls, e.dial(i%2, e.enroll(mesh, fmt.Sprintf("p%d", i)), nil))
	}
	var wg sync.WaitGroup
	for _, cl := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < sends; j++ {
				if _, err := cl.Send(context.Background(), "*", meshd.PriorityLow, []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := clients + clients*sends // peer_joined + message_sent
	var v auditVerifyResult
	waitFor(t, 10*time.Second, "all events written", func() bool {
		v = auditVerify(t, cls[0])
		return v.Entries >= want
	})
	if !v.Valid || v.Entries != want {
		t.Fatalf("%+v, want %d valid entries", v, want)
	}
	if written := auditEventsCounted(t, want, e.replicas...); written != float64(want) {
		t.Fatalf("replicas wrote %v events, want %d", written, want)
	}
}

// auditEventsCounted returns broker_audit_events_total summed over rs once
// it reaches want (or after 10 s). A writer counts its batch after the
// commit a verify may already have seen, so the counters can trail the
// chain for a moment; callers then check that they match it exactly (no
// event written twice).
func auditEventsCounted(t *testing.T, want int, rs ...*replica) float64 {
	t.Helper()
	var n float64
	waitFor(t, 10*time.Second, "audit counters to reach the chain", func() bool {
		n = 0
		for _, r := range rs {
			n += counter(t, r, "broker_audit_events_total")
		}
		return n >= float64(want)
	})
	return n
}

// messageSentEntries counts the message_sent events of the message ids in
// the chain and in the outbox, in one snapshot (a writer may move them
// between two statements).
func (e *env) messageSentEntries(meshID string, ids []string) (chained, outboxed int) {
	e.t.Helper()
	conn, err := pgx.Connect(context.Background(), e.dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(context.Background(), `
SELECT (SELECT count(*) FROM mesh.audit_log WHERE mesh_id = $1 AND event_type = 'message_sent' AND message_id = ANY($2)),
	(SELECT count(*) FROM mesh.audit_outbox WHERE mesh_id = $1 AND event_type = 'message_sent' AND message_id = ANY($2))`,
		meshID, ids).Scan(&chained, &outboxed)
	if err != nil {
		e.t.Fatal(err)
	}
	return chained, outboxed
}

// An acked send's message_sent is durable when the ack arrives: it was
// committed with the queue row, before any writer ran.
func TestAuditAckedSendIsDurable(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("AuditAck")
	c := e.dial(0, e.enroll(mesh, "erin"), nil)
	ack, err := c.Send(context.Background(), "*", meshd.PriorityNext, []byte("last"))
	if err != nil || !ack.Queued {
		t.Fatalf("%+v %v", ack, err)
	}
	if chained, outboxed := e.messageSentEntries(mesh.ID, []string{ack.MessageID}); chained+outboxed != 1 {
		t.Fatalf("message_sent of %s: %d in the chain, %d in the outbox; want 1 in all", ack.MessageID, chained, outboxed)
	}
}

// While the chain cannot be written the sends are not slowed and lose
// nothing: their events wait in the outbox and are chained once the
// database takes them again; nothing is counted as dropped.
func TestAuditWriteFailureDoesNotBlockSends(t *testing.T) {
	e := newEnv(t, 1, nil)
	c := e.dial(0, e.enroll(e.newMesh("AuditFail"), "fay"), nil)
	r := auditQuery(t, c, map[string]any{}) // peer_joined written, writer running
	if r.Total != 1 {
		t.Fatalf("%+v", r)
	}
	e.sql(`ALTER TABLE mesh.audit_log RENAME TO audit_log_away`)
	start := time.Now()
	if _, err := c.Send(context.Background(), "*", meshd.PriorityNext, []byte("while down")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("send took %v while audit writes fail", d)
	}
	// audit_query first tries to chain the mesh's outbox (it fails), then
	// fails to read the chain.
	var se *client.ServerError
	if _, err := c.Request(context.Background(), map[string]any{"type": "audit_query"}, "audit_result"); !errors.As(err, &se) {
		t.Fatalf("audit_query with the chain away: %v", err)
	}
	e.sql(`ALTER TABLE mesh.audit_log_away RENAME TO audit_log`)
	if _, err := c.Send(context.Background(), "*", meshd.PriorityNext, []byte("back")); err != nil {
		t.Fatal(err)
	}
	if v := auditVerify(t, c); !v.Valid || v.Entries != 3 {
		t.Fatalf("%+v: want peer_joined and both message_sent", v)
	}
	for _, reason := range []string{"write_failed", "invalid_payload"} {
		if n := counter(t, e.replicas[0], "broker_audit_dropped_total", "reason", reason); n != 0 {
			t.Errorf("dropped %s = %v", reason, n)
		}
	}
}

// Issue 11 item 2: while the mesh's chain lock is held elsewhere no writer
// can chain, yet every send is acked at once and its event is durable in
// the outbox; once the lock is released every acked send has its
// message_sent in the chain, which verifies, and nothing was dropped.
func TestAuditChainLockedSendsAllChainedAfterRelease(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) { c.SendBurst, c.SendPerMinute = 1e6, 1e9 })
	mesh := e.newMesh("AuditLocked")
	const clients, sends = 8, 60
	var cls []*client.Client
	for i := 0; i < clients; i++ {
		cls = append(cls, e.dial(0, e.enroll(mesh, fmt.Sprintf("q%d", i)), nil))
	}
	auditQuery(t, cls[0], map[string]any{}) // the peer_joined events are chained

	ctx := context.Background()
	lock, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_lock($1)`, wire.AuditLockKey(mesh.ID)); err != nil {
		t.Fatal(err)
	}
	ids := sendAll(t, cls, sends)
	if chained, outboxed := e.messageSentEntries(mesh.ID, ids); chained != 0 || outboxed != len(ids) {
		t.Fatalf("with the chain locked: %d chained, %d in the outbox; want 0 and %d", chained, outboxed, len(ids))
	}
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_unlock($1)`, wire.AuditLockKey(mesh.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every acked send's message_sent chained", func() bool {
		chained, _ := e.messageSentEntries(mesh.ID, ids)
		return chained == len(ids)
	})
	if v := auditVerify(t, cls[0]); !v.Valid || v.Entries != clients+len(ids) {
		t.Fatalf("%+v, want %d valid entries", v, clients+len(ids))
	}
	if n := auditEventsCounted(t, clients+len(ids), e.replicas[0]); n != float64(clients+len(ids)) {
		t.Fatalf("broker_audit_events_total %v, want %d", n, clients+len(ids))
	}
}

// sendAll has every client send n broadcasts concurrently and returns the
// acked message ids.
func sendAll(t *testing.T, cls []*client.Client, n int) []string {
	t.Helper()
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	start := time.Now()
	for _, cl := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < n; j++ {
				ack, err := cl.Send(context.Background(), "*", meshd.PriorityLow, nil)
				if err != nil || !ack.Queued {
					t.Errorf("send: %+v %v", ack, err)
					return
				}
				mu.Lock()
				ids = append(ids, ack.MessageID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("%d sends in %v", len(cls)*n, time.Since(start).Round(time.Millisecond))
	if len(ids) != len(cls)*n {
		t.Fatalf("%d of %d sends acked", len(ids), len(cls)*n)
	}
	return ids
}
