package store

import (
	"slices"
	"testing"
	"time"

	"github.com/meshd/meshd"
)

// Which live presences a hook POST addresses (B.6.4 lookup, A.3-14: every
// mesh). Presences, oldest first: bob and carol share one session (pid 77,
// /proj) in two meshes; alice runs pid 88 in /proj; a disconnected row has
// pid 99 in /proj; bob has another session (pid 66) in /other.
func TestHookPresences(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	type spec struct {
		name   string
		member meshd.Member
		pid    int
		cwd    string
		gone   bool
	}
	specs := []spec{
		{"bob77", f.bob, 77, "/proj", false},
		{"carol77", f.carol, 77, "/proj", false},
		{"alice88", f.alice, 88, "/proj", false},
		{"gone99", f.alice, 99, "/proj", true},
		{"bob66", f.bob, 66, "/other", false},
	}
	ids := map[string]string{}
	for i, sp := range specs {
		req := f.attachReq(sp.member, "s-"+sp.name, "")
		req.Presence.PID, req.Presence.CWD = sp.pid, sp.cwd
		id := f.attach(req).Presence.ID
		ids[sp.name] = id
		// Distinct, increasing connected_at so "newest" is well defined.
		f.exec("UPDATE mesh.presence SET connected_at = now() - make_interval(secs => $2) WHERE id = $1", id, 100-i)
		if sp.gone {
			f.exec("UPDATE mesh.presence SET disconnected_at = now() WHERE id = $1", id)
		}
	}
	tests := []struct {
		name string
		pid  int
		cwd  string
		want []string // newest first
	}{
		{"pid_match_every_mesh", 77, "/proj", []string{"carol77", "bob77"}},
		{"pid_match_single", 88, "/proj", []string{"alice88"}},
		{"pid_absent_newest_by_cwd", 0, "/proj", []string{"alice88"}},
		// A given pid that matches nothing is no match (issue 12): the
		// hook stores it as pending instead of steering the newest session.
		{"pid_unknown_no_fallback", 12345, "/proj", nil},
		{"disconnected_pid_no_fallback", 99, "/proj", nil},
		{"other_cwd", 66, "/other", []string{"bob66"}},
		{"pid_of_other_cwd_not_matched", 66, "/proj", nil},
		{"unknown_cwd_none", 77, "/nowhere", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.s.HookPresences(f.ctx, tt.pid, tt.cwd)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs, wantIDs []string
			for _, p := range got {
				gotIDs = append(gotIDs, p.ID)
				if p.MemberPubkey == "" || p.DisconnectedAt != nil {
					t.Fatalf("presence %+v", p)
				}
			}
			for _, n := range tt.want {
				wantIDs = append(wantIDs, ids[n])
			}
			if !slices.Equal(gotIDs, wantIDs) {
				t.Fatalf("got %v, want %v (%v)", gotIDs, wantIDs, tt.want)
			}
		})
	}

	// When the newest /proj presence disconnects, the fallback moves to the
	// next newest session and brings its other mesh along.
	f.exec("UPDATE mesh.presence SET disconnected_at = now() WHERE id = $1", ids["alice88"])
	got, err := f.s.HookPresences(f.ctx, 0, "/proj")
	if err != nil || len(got) != 2 || got[0].ID != ids["carol77"] || got[1].ID != ids["bob77"] {
		t.Fatalf("fallback after disconnect: %v, %v", got, err)
	}
}

// A pending hook status is stored for (pid, cwd) and applied on connect
// (the Attach side is pinned by TestAttachPendingStatus).
func TestAddPendingStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := f.s.AddPendingStatus(f.ctx, 0, "/proj", "asleep"); err == nil {
		t.Fatal("invalid status accepted")
	}
	if err := f.s.AddPendingStatus(f.ctx, 4321, "/proj", meshd.StatusWorking); err != nil {
		t.Fatal(err)
	}
	var st, src string
	var applied bool
	err := f.s.pool.QueryRow(f.ctx, `SELECT status, status_source, applied_at IS NOT NULL
FROM mesh.pending_status WHERE pid = 4321 AND cwd = '/proj'`).Scan(&st, &src, &applied)
	if err != nil || st != "working" || src != "hook" || applied {
		t.Fatalf("pending row %s/%s applied=%v: %v", st, src, applied, err)
	}
	req := f.attachReq(f.bob, "s1", "")
	req.Presence.PID, req.Presence.CWD = 4321, "/proj"
	if p := f.attach(req).Presence; p.Status != meshd.StatusWorking || p.StatusSource != meshd.SourceHook {
		t.Fatalf("status on connect %s/%s", p.Status, p.StatusSource)
	}
}

// The pending sweeper removes applied and expired rows and keeps fresh
// unapplied ones (B.6.5).
func TestSweepPendingStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rows := []struct {
		name    string
		ago     int
		applied bool
		kept    bool
	}{
		{"fresh_unapplied_kept", 2, false, true},
		{"fresh_applied_deleted", 2, true, false},
		{"expired_unapplied_deleted", 11, false, false},
		{"expired_applied_deleted", 30, true, false},
	}
	for i, r := range rows {
		f.exec(`INSERT INTO mesh.pending_status (id, pid, cwd, status, created_at, applied_at)
VALUES ($1, $2, '/p', 'working', now() - make_interval(secs => $3), CASE WHEN $4 THEN now() END)`,
			r.name, i, r.ago, r.applied)
	}
	n, err := f.s.SweepPendingStatus(f.ctx, 10*time.Second)
	if err != nil || n != 3 {
		t.Fatalf("SweepPendingStatus = %d, %v; want 3", n, err)
	}
	for _, r := range rows {
		var left int
		_ = f.s.pool.QueryRow(f.ctx, "SELECT count(*) FROM mesh.pending_status WHERE id = $1", r.name).Scan(&left)
		if (left == 1) != r.kept {
			t.Errorf("%s: %d rows left", r.name, left)
		}
	}
	if n, err := f.s.SweepPendingStatus(f.ctx, 10*time.Second); err != nil || n != 0 {
		t.Fatalf("second sweep = %d, %v; want 0", n, err)
	}
}
