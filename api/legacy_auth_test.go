package api_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/broker"
)

// Who uses the legacy shim is recorded per (user, route) — first and last
// hit, count — by a batched upsert, never by the request itself; bearer
// requests are not recorded; broker_legacy_auth_users counts the distinct
// users of the last 24 h.
func TestLegacyAuthUseRecorded(t *testing.T) {
	e := newEnv(t, 1, func(_ *broker.Config, c *api.Config) {
		c.LegacyAuth = true
		c.LegacyAuthFlush = time.Hour // the test flushes explicitly
	})
	r := e.replicas[0]
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows := func() (n int) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM mesh.legacy_auth_use`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	cliDo(t, "GET", e.cliURL("/cli/meshes?user_id=alice"), "", nil).expect(t, 200, "")
	cliDo(t, "GET", e.cliURL("/cli/meshes?user_id=alice"), "", nil).expect(t, 200, "")
	cliDo(t, "GET", e.cliURL("/cli/meshes?user_id=bob"), "", nil).expect(t, 200, "")
	cliDo(t, "POST", e.cliURL("/cli/mesh/nope/invite"), "", map[string]any{"user_id": "bob"})
	cliDo(t, "GET", e.cliURL("/cli/meshes"), e.cliToken("carol"), nil).expect(t, 200, "")
	if n := rows(); n != 0 {
		t.Fatalf("%d rows written before the flush: a commit per request", n)
	}
	if err := r.ctl.FlushLegacyAuth(ctx); err != nil {
		t.Fatal(err)
	}
	get := func(user, route string) (hits int, first, last time.Time) {
		t.Helper()
		if err := conn.QueryRow(ctx, `SELECT hits, first_at, last_at FROM mesh.legacy_auth_use WHERE user_id = $1 AND route = $2`,
			user, route).Scan(&hits, &first, &last); err != nil {
			t.Fatalf("%s %s: %v", user, route, err)
		}
		return hits, first, last
	}
	if n := rows(); n != 3 {
		t.Fatalf("%d (user, route) rows, want 3", n)
	}
	hits, first, last := get("alice", "GET /cli/meshes")
	if hits != 2 || last.Before(first) {
		t.Fatalf("alice: %d hits, first %v last %v", hits, first, last)
	}
	if h, _, _ := get("bob", "POST /cli/mesh/{slug}/invite"); h != 1 {
		t.Fatalf("bob invite hits %d", h)
	}
	if got := counter(t, r, "broker_legacy_auth_users"); got != 2 {
		t.Fatalf("broker_legacy_auth_users = %v, want 2", got)
	}
	// The next flush adds to the counts and moves only last_at.
	cliDo(t, "GET", e.cliURL("/cli/meshes?user_id=alice"), "", nil).expect(t, 200, "")
	if err := r.ctl.FlushLegacyAuth(ctx); err != nil {
		t.Fatal(err)
	}
	hits2, first2, last2 := get("alice", "GET /cli/meshes")
	if hits2 != 3 || !first2.Equal(first) || last2.Before(last) {
		t.Fatalf("alice after a second flush: %d hits, first %v (was %v), last %v (was %v)", hits2, first2, first, last2, last)
	}
	if got := counter(t, r, "broker_legacy_auth_users"); got != 2 {
		t.Fatalf("broker_legacy_auth_users = %v, want 2", got)
	}
}
