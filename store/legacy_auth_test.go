package store

import (
	"testing"
	"time"
)

// One upsert per flush merges each (user, route): earliest first hit,
// latest last hit, counts added; the report filters by last hit and the
// users gauge counts distinct users in its window.
func TestLegacyAuthUse(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := now.Add(-10 * 24 * time.Hour)
	if err := f.s.RecordLegacyAuthHits(f.ctx, []LegacyAuthHits{
		{UserID: "alice", Route: "GET /cli/meshes", First: now.Add(-time.Minute), Last: now.Add(-time.Minute), Count: 2},
		{UserID: "bob", Route: "GET /cli/meshes", First: old, Last: old, Count: 1},
		{UserID: "alice", Route: "POST /cli/mesh/create", First: now, Last: now, Count: 1},
	}); err != nil {
		t.Fatal(err)
	}
	if err := f.s.RecordLegacyAuthHits(f.ctx, []LegacyAuthHits{
		{UserID: "alice", Route: "GET /cli/meshes", First: now.Add(-2 * time.Minute), Last: now, Count: 3},
	}); err != nil {
		t.Fatal(err)
	}
	all, err := f.s.LegacyAuthReport(f.ctx, 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("report all: %v %v", all, err)
	}
	recent, err := f.s.LegacyAuthReport(f.ctx, 7*24*time.Hour)
	if err != nil || len(recent) != 2 {
		t.Fatalf("report 7d: %+v %v", recent, err)
	}
	for _, u := range recent {
		if u.UserID != "alice" {
			t.Fatalf("bob's 10-day-old hit in the 7d report: %+v", u)
		}
		if u.Route == "GET /cli/meshes" && (u.Hits != 5 || !u.FirstAt.Equal(now.Add(-2*time.Minute)) || !u.LastAt.Equal(now)) {
			t.Fatalf("merged row %+v", u)
		}
	}
	if n, err := f.s.LegacyAuthUsers(f.ctx, 24*time.Hour); err != nil || n != 1 {
		t.Fatalf("users 24h: %d %v", n, err)
	}
	if n, err := f.s.LegacyAuthUsers(f.ctx, 30*24*time.Hour); err != nil || n != 2 {
		t.Fatalf("users 30d: %d %v", n, err)
	}
}
