package store

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

func strp(s string) *string { return &s }

// auditRows returns the ids of meshID's chain in order.
func (f *fixture) auditIDs(meshID string) []int64 {
	f.t.Helper()
	rows, err := f.s.pool.Query(f.ctx, `SELECT id FROM mesh.audit_log WHERE mesh_id = $1 ORDER BY id`, meshID)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			f.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// auditForks counts rows of meshID whose prev_hash is not the previous
// row's hash, plus prev_hash values shared by two rows: a forked chain has
// both, a linear one neither.
func (f *fixture) auditForks(meshID string) (mislinked, shared int) {
	f.t.Helper()
	err := f.s.pool.QueryRow(f.ctx, `
SELECT
	(SELECT count(*) FROM (
		SELECT prev_hash, lag(hash, 1, 'genesis') OVER (ORDER BY id) AS want
		FROM mesh.audit_log WHERE mesh_id = $1) x WHERE prev_hash <> want),
	(SELECT count(*) - count(DISTINCT prev_hash) FROM mesh.audit_log WHERE mesh_id = $1)`, meshID).
		Scan(&mislinked, &shared)
	if err != nil {
		f.t.Fatal(err)
	}
	return mislinked, shared
}

func (f *fixture) verify(meshID string) AuditVerification {
	f.t.Helper()
	v, err := f.s.VerifyAuditDetail(f.ctx, meshID)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

func (f *fixture) appendAudit(meshID string, evs ...AuditEvent) {
	f.t.Helper()
	if err := f.s.AppendAudit(f.ctx, meshID, evs); err != nil {
		f.t.Fatal(err)
	}
}

// The two B.8 vectors, written through AppendAudit with a fixed created_at
// and checked by VerifyAudit against the stored rows.
func TestAuditVectors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.createMesh1()
	vectors := []struct {
		name string
		ev   AuditEvent
		want string
	}{
		{"peer_joined", AuditEvent{
			EventType: "peer_joined", ActorMemberID: strp("member1"), ActorDisplayName: "Member One",
			Payload: map[string]any{"restored": false, "pubkey": "ab",
				"groups": []meshd.Group{{Name: "x"}}, "role": "control-plane"},
			CreatedAt: time.Date(2026, 4, 15, 12, 0, 0, 0, time.UTC),
		}, "52328d848abe76c917cefb38483e05a22fba4a4749b0bc704b9f93f59d2be649"},
		{"peer_left null actor", AuditEvent{
			EventType: "peer_left", Payload: map[string]any{},
			// Sub-millisecond digits are truncated, as JS Dates never have them.
			CreatedAt: time.Date(2026, 4, 15, 12, 0, 0, 123_999_999, time.UTC),
		}, "8650177f69388200ad532ed487cd953ec2480ac19aa35a50b578449826de49a5"},
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			f.exec(`DELETE FROM mesh.audit_log`)
			f.appendAudit("mesh1", v.ev)
			var hash, prev string
			var at time.Time
			if err := f.s.pool.QueryRow(f.ctx, `SELECT hash, prev_hash, created_at FROM mesh.audit_log WHERE mesh_id = 'mesh1'`).
				Scan(&hash, &prev, &at); err != nil {
				t.Fatal(err)
			}
			if hash != v.want || prev != wire.Genesis {
				t.Fatalf("hash %s prev %s, want %s after genesis", hash, prev, v.want)
			}
			if !at.Equal(v.ev.CreatedAt.Truncate(time.Millisecond)) {
				t.Fatalf("stored created_at %v, hashed %v", at, v.ev.CreatedAt.Truncate(time.Millisecond))
			}
			valid, n, broken, err := f.s.VerifyAudit(f.ctx, "mesh1")
			if err != nil || !valid || n != 1 || broken != nil {
				t.Fatalf("verify: valid=%v entries=%d brokenAt=%v err=%v", valid, n, broken, err)
			}
		})
	}
}

func (f *fixture) createMesh1() {
	f.t.Helper()
	m := meshd.Mesh{ID: "mesh1", Slug: "mesh1", Name: "vectors", OwnerUserID: "u"}
	if err := f.s.CreateMesh(f.ctx, &m); err != nil {
		f.t.Fatal(err)
	}
}

func TestAuditChainOfThree(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.appendAudit(f.mesh.ID, AuditEvent{EventType: "peer_joined", ActorMemberID: &f.alice.ID, ActorDisplayName: "alice",
		Payload: map[string]any{"pubkey": f.alice.Pubkey, "groups": []meshd.Group{}, "restored": false, "role": "control-plane"}})
	f.appendAudit(f.mesh.ID,
		AuditEvent{EventType: "message_sent", ActorMemberID: &f.alice.ID, Payload: map[string]any{"targetSpec": "*", "priority": meshd.PriorityNext}},
		AuditEvent{EventType: "peer_left", ActorMemberID: &f.alice.ID, ActorDisplayName: "alice", Payload: map[string]any{}})
	// Another mesh's chain is separate and starts at genesis.
	f.appendAudit(f.other.ID, AuditEvent{EventType: "peer_left", Payload: map[string]any{}})

	v := f.verify(f.mesh.ID)
	if !v.Valid || v.Entries != 3 || v.BrokenAt != nil {
		t.Fatalf("%+v", v)
	}
	if mis, shared := f.auditForks(f.mesh.ID); mis != 0 || shared != 0 {
		t.Fatalf("forks: %d mislinked, %d shared prev_hash", mis, shared)
	}
	if v := f.verify(f.other.ID); !v.Valid || v.Entries != 1 {
		t.Fatalf("other mesh %+v", v)
	}
	var sub int
	if err := f.s.pool.QueryRow(f.ctx, `SELECT count(*) FROM mesh.audit_log
WHERE mod(extract(microseconds FROM created_at)::bigint, 1000) <> 0`).Scan(&sub); err != nil || sub != 0 {
		t.Fatalf("%d rows have sub-millisecond created_at (%v)", sub, err)
	}
	// A writer's batch is one statement; its rows still take ids in chain
	// order, or verify would find the first one out of place.
	batch := make([]AuditEvent, 500)
	for i := range batch {
		batch[i] = AuditEvent{EventType: "message_sent", ActorMemberID: &f.bob.ID, Payload: map[string]any{"targetSpec": "*", "n": i}}
	}
	f.appendAudit(f.mesh.ID, batch...)
	if v := f.verify(f.mesh.ID); !v.Valid || v.Entries != 503 {
		t.Fatalf("after a batch of 500: %+v", v)
	}
}

func TestAuditEmptyChainIsValid(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	valid, n, broken, err := f.s.VerifyAudit(f.ctx, f.mesh.ID)
	if err != nil || !valid || n != 0 || broken != nil {
		t.Fatalf("valid=%v entries=%d brokenAt=%v err=%v", valid, n, broken, err)
	}
}

// Payloads that JSONB stores differently from how they were written (1.0,
// key order, characters encoding/json would escape) still verify: the
// stored text is the canonical text and verification re-canonicalizes it
// with JS semantics.
func TestAuditPayloadRoundTripsThroughJSONB(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	raw := json.RawMessage(`{"z":1.0,"a":[1e21,0.1,-0,"<&>\u2028\u0007"],"n":null,"big":12345678901234567890}`)
	f.appendAudit(f.mesh.ID, AuditEvent{EventType: "state_set", ActorMemberID: &f.bob.ID,
		Payload: map[string]any{"key": "k", "value": raw}})
	var stored string
	if err := f.s.pool.QueryRow(f.ctx, `SELECT payload::text FROM mesh.audit_log WHERE mesh_id = $1`, f.mesh.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	c, err := wire.CanonicalJSONBytes([]byte(stored))
	want := `{"key":"k","value":{"a":[1e+21,0.1,0,"<&>` + "\u2028" + `\u0007"],"big":12345678901234567000,"n":null,"z":1}}`
	if err != nil || c != want {
		t.Fatalf("stored %s canonical %s (%v), want %s", stored, c, err, want)
	}
	// Rewriting the JSONB value with an equal one is not tampering.
	f.exec(`UPDATE mesh.audit_log SET payload = payload::text::jsonb`)
	if v := f.verify(f.mesh.ID); !v.Valid || v.Entries != 1 {
		t.Fatalf("%+v", v)
	}
}

func TestAuditBadPayloadWritesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	err := f.s.AppendAudit(f.ctx, f.mesh.ID, []AuditEvent{
		{EventType: "peer_left", Payload: map[string]any{}},
		{EventType: "state_set", Payload: map[string]any{"value": make(chan int)}},
	})
	if err == nil {
		t.Fatal("want an error for an unmarshalable payload")
	}
	if ids := f.auditIDs(f.mesh.ID); len(ids) != 0 {
		t.Fatalf("%d rows written", len(ids))
	}
}

// Each tampering is detected at exactly the row it touched; rows after it
// are still counted.
func TestAuditTamperingDetectedAtThatRow(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		row    int // 0-based index of the tampered row among 5
		sql    string
		reason string
	}{
		{"payload edited", 2, `UPDATE mesh.audit_log SET payload = '{"targetSpec":"@other","priority":"now"}' WHERE id = $1`, "hash"},
		{"payload key added", 1, `UPDATE mesh.audit_log SET payload = payload || '{"x":1}' WHERE id = $1`, "hash"},
		{"prev_hash edited", 3, `UPDATE mesh.audit_log SET prev_hash = repeat('0', 64) WHERE id = $1`, "prev_hash"},
		{"hash edited", 4, `UPDATE mesh.audit_log SET hash = repeat('f', 64) WHERE id = $1`, "hash"},
		{"first row relinked", 0, `UPDATE mesh.audit_log SET prev_hash = 'genesis2' WHERE id = $1`, "prev_hash"},
		{"created_at moved 1ms", 2, `UPDATE mesh.audit_log SET created_at = created_at + interval '1 millisecond' WHERE id = $1`, "hash"},
		{"actor changed", 1, `UPDATE mesh.audit_log SET actor_member_id = 'mallory' WHERE id = $1`, "hash"},
		{"event type changed", 3, `UPDATE mesh.audit_log SET event_type = 'peer_left' WHERE id = $1`, "hash"},
		// Deleting a row breaks the link of the row after it.
		{"row deleted", 2, `DELETE FROM mesh.audit_log WHERE id = $1`, "prev_hash"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			for i := 0; i < 5; i++ {
				f.appendAudit(f.mesh.ID, AuditEvent{EventType: "message_sent", ActorMemberID: &f.alice.ID,
					ActorDisplayName: "alice", Payload: map[string]any{"targetSpec": "*", "priority": "next", "i": i}})
			}
			ids := f.auditIDs(f.mesh.ID)
			if v := f.verify(f.mesh.ID); !v.Valid || v.Entries != 5 {
				t.Fatalf("before tampering: %+v", v)
			}
			f.exec(tc.sql, ids[tc.row])
			wantAt, wantIndex, wantEntries := ids[tc.row], tc.row+1, 5
			if tc.sql[:6] == "DELETE" {
				wantAt, wantEntries = ids[tc.row+1], 4
			}
			v := f.verify(f.mesh.ID)
			if v.Valid || v.BrokenAt == nil || *v.BrokenAt != wantAt || v.BrokenIndex != wantIndex ||
				v.Entries != wantEntries || v.Reason != tc.reason {
				t.Fatalf("got %+v (brokenAt %v), want broken at id %d (entry %d of %d) by %s",
					v, deref(v.BrokenAt), wantAt, wantIndex, wantEntries, tc.reason)
			}
		})
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// Eight writers append 2,000 events to one mesh at once, some one event per
// transaction and some in batches: the chain is linear and verifies.
func TestAuditConcurrentAppendNeverForks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const writers, each = 8, 250
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := 1 + w%2*9 // odd writers batch 10 events per transaction
			for i := 0; i < each; i += batch {
				evs := make([]AuditEvent, 0, batch)
				for j := i; j < i+batch && j < each; j++ {
					evs = append(evs, AuditEvent{EventType: "message_sent", ActorMemberID: &f.alice.ID,
						Payload: map[string]any{"targetSpec": "*", "priority": "next", "w": w, "i": j}})
				}
				if err := f.s.AppendAudit(f.ctx, f.mesh.ID, evs); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v := f.verify(f.mesh.ID)
	if !v.Valid || v.Entries != writers*each {
		t.Fatalf("%+v", v)
	}
	if mis, shared := f.auditForks(f.mesh.ID); mis != 0 || shared != 0 {
		t.Fatalf("forks: %d mislinked, %d shared prev_hash", mis, shared)
	}
	var backwards int
	if err := f.s.pool.QueryRow(f.ctx, `SELECT count(*) FROM (
	SELECT created_at < lag(created_at) OVER (ORDER BY id) AS back FROM mesh.audit_log WHERE mesh_id = $1) x WHERE back`,
		f.mesh.ID).Scan(&backwards); err != nil || backwards != 0 {
		t.Fatalf("%d rows go back in time (%v)", backwards, err)
	}
}

func TestAuditQuery(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i := 0; i < 5; i++ {
		f.appendAudit(f.mesh.ID, AuditEvent{EventType: "message_sent", ActorMemberID: &f.alice.ID, ActorDisplayName: "alice",
			Payload: map[string]any{"targetSpec": "*", "priority": "next", "i": i}})
	}
	f.appendAudit(f.mesh.ID, AuditEvent{EventType: "peer_left", Payload: map[string]any{}})
	f.appendAudit(f.other.ID, AuditEvent{EventType: "peer_left", Payload: map[string]any{}})

	all, total, err := f.s.QueryAudit(f.ctx, f.mesh.ID, 50, 0, "")
	if err != nil || total != 6 || len(all) != 6 {
		t.Fatalf("total %d, %d entries, %v", total, len(all), err)
	}
	if all[0].EventType != "peer_left" || all[0].ActorMemberID != nil || all[0].ActorDisplayName != nil {
		t.Fatalf("newest first, null actor: %+v", all[0])
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID >= all[i-1].ID {
			t.Fatalf("not newest first: %d after %d", all[i].ID, all[i-1].ID)
		}
	}
	if e := all[1]; *e.ActorMemberID != f.alice.ID || *e.ActorDisplayName != "alice" || len(e.Hash) != 64 ||
		string(e.Payload) != `{"i": 4, "priority": "next", "targetSpec": "*"}` {
		t.Fatalf("%+v payload %s", e, e.Payload)
	}
	page, total, err := f.s.QueryAudit(f.ctx, f.mesh.ID, 2, 1, "message_sent")
	if err != nil || total != 5 || len(page) != 2 || page[0].ID != all[2].ID || page[1].ID != all[3].ID {
		t.Fatalf("filtered page: total %d, %+v, %v", total, page, err)
	}
	if past, total, err := f.s.QueryAudit(f.ctx, f.mesh.ID, 10, 100, ""); err != nil || total != 6 || len(past) != 0 {
		t.Fatalf("past the end: total %d, %d entries, %v", total, len(past), err)
	}
	if _, _, err := f.s.QueryAudit(f.ctx, f.mesh.ID, 0, 0, ""); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

// BenchmarkAppendAuditBatch measures audit events per second into one mesh
// by batch size: one event per transaction is upstream's write path; the
// broker's writer batches what arrives within 20 ms.
func BenchmarkAppendAuditBatch(b *testing.B) {
	for _, size := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			f := newFixture(b)
			// A chain with history and fresh planner statistics. (Without an
			// index on (mesh_id, id), a stale plan may read the tail by
			// sorting all of the mesh's rows; this measures the good plan.)
			seed := make([]AuditEvent, 1000)
			for i := range seed {
				seed[i] = AuditEvent{EventType: "peer_left", Payload: map[string]any{}}
			}
			for i := 0; i < 10; i++ {
				f.appendAudit(f.mesh.ID, seed...)
				f.appendAudit(f.other.ID, seed...)
			}
			f.exec(`ANALYZE mesh.audit_log`)
			evs := make([]AuditEvent, size)
			for i := range evs {
				evs[i] = AuditEvent{EventType: "message_sent", ActorMemberID: &f.alice.ID, ActorDisplayName: "alice",
					Payload: map[string]any{"targetSpec": f.bob.Pubkey, "priority": "now"}}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := f.s.AppendAudit(f.ctx, f.mesh.ID, evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
