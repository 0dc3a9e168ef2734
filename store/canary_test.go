package store

import (
	"testing"
	"time"

	"github.com/meshd/meshd"
)

// The system mesh exists after Migrate; its (canary) rows are not counted by
// QueueStats, get no message_sent in the audit outbox, and DeleteCanaryRows
// removes the claimed ones and the stale ones, never another mesh's rows.
func TestCanaryRowsOutOfGaugesAndAudit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	canary := func() *meshd.QueuedMessage {
		return &meshd.QueuedMessage{MeshID: meshd.SystemMeshID, SenderMemberID: meshd.SystemMemberID,
			TargetSpec: "canary-n1", Priority: meshd.PriorityNow, SenderName: "delivery canary"}
	}
	a, b := canary(), canary()
	user := &meshd.QueuedMessage{MeshID: f.mesh.ID, SenderMemberID: f.alice.ID, TargetSpec: f.bob.Pubkey, Nonce: "n", Ciphertext: "c"}
	if err := f.s.EnqueueBatch(f.ctx, []*meshd.QueuedMessage{a, user, b}, []bool{false, false, false}); err != nil {
		t.Fatal(err)
	}
	depth, _, err := f.s.QueueStats(f.ctx)
	if err != nil || depth != 1 {
		t.Fatalf("QueueStats depth %d, %v; want 1 (the member's row only)", depth, err)
	}
	var audited int
	if err := f.s.pool.QueryRow(f.ctx, `SELECT count(*) FROM mesh.audit_outbox WHERE mesh_id = $1`, meshd.SystemMeshID).Scan(&audited); err != nil || audited != 0 {
		t.Fatalf("%d outbox entries for canary rows (%v)", audited, err)
	}
	if err := f.s.pool.QueryRow(f.ctx, `SELECT count(*) FROM mesh.audit_outbox WHERE message_id = $1`, user.ID).Scan(&audited); err != nil || audited != 1 {
		t.Fatalf("%d outbox entries for the member's row (%v)", audited, err)
	}
	rows, err := f.s.Claim(f.ctx, meshd.ClaimRequest{MeshID: meshd.SystemMeshID, ClaimerPresenceID: "canary-n1",
		MemberPubkey: "canary-n1", Priorities: allPrios})
	if err != nil || len(rows) != 2 || rows[0].ID != a.ID || rows[1].ID != b.ID {
		t.Fatalf("claim %v, %v", rows, err)
	}
	if n, err := f.s.DeleteCanaryRows(f.ctx, []string{a.ID}, time.Hour); err != nil || n != 1 {
		t.Fatalf("delete claimed: %d, %v", n, err)
	}
	if _, err := f.s.pool.Exec(f.ctx, `UPDATE mesh.message_queue SET created_at = now() - interval '10 minutes'`); err != nil {
		t.Fatal(err)
	}
	if n, err := f.s.DeleteCanaryRows(f.ctx, nil, 5*time.Minute); err != nil || n != 1 {
		t.Fatalf("delete stale: %d, %v", n, err)
	}
	if depth, _, err := f.s.QueueStats(f.ctx); err != nil || depth != 1 {
		t.Fatalf("the member's row went with the canary's: depth %d, %v", depth, err)
	}
}
