package store

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/internal/testpg"
)

// Replicas starting together must apply each file once (A.3-2, B.16).
func TestMigrateConcurrentAppliesOnce(t *testing.T) {
	t.Parallel()
	s := newRawStore(t, testpg.NewDatabase(t))
	ctx := testCtx(t)
	const replicas = 4
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() { errs[i] = s.Migrate(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	assertRecorded(t, s)

	// Idempotent: a later start applies nothing and changes nothing.
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	assertRecorded(t, s)
}

func assertRecorded(t *testing.T, s *Store) {
	t.Helper()
	ctx := testCtx(t)
	want := Migrations()
	if len(want) == 0 {
		t.Fatal("no embedded migrations")
	}
	rows, err := s.pool.Query(ctx, "SELECT filename, sha256, count(*) OVER () FROM mesh.__cmh_migrations ORDER BY filename")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []Migration
	for rows.Next() {
		var m Migration
		var n int
		if err := rows.Scan(&m.Name, &m.SHA256, &n); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(got) != len(want) {
		t.Fatalf("recorded %d migrations, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("recorded[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	name, sha, err := s.LatestApplied(ctx)
	if err != nil || name != want[len(want)-1].Name || sha != want[len(want)-1].SHA256 {
		t.Fatalf("LatestApplied = %q %q %v, want %v", name, sha, err, want[len(want)-1])
	}
}

func TestLatestAppliedBeforeMigrate(t *testing.T) {
	t.Parallel()
	s := newRawStore(t, testpg.NewDatabase(t))
	_, _, err := s.LatestApplied(testCtx(t))
	wantErr(t, err, meshd.ErrNotFound)
}

func TestMigrateWarnsOnChangedFile(t *testing.T) {
	t.Parallel()
	url := testpg.NewDatabase(t)
	var logs bytes.Buffer
	s, err := New(testCtx(t), Config{URL: url, Logger: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := testCtx(t)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	first := Migrations()[0].Name
	if _, err := s.pool.Exec(ctx, "UPDATE mesh.__cmh_migrations SET sha256 = 'edited' WHERE filename = $1", first); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("a changed file must warn, not fail: %v", err)
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), first) {
		t.Fatalf("no warning naming %s in %s", first, logs.String())
	}
}

// Every timestamp column is timestamptz (A.3-11) and every table the brief
// names exists.
func TestSchemaShape(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := testCtx(t)
	var naive []string
	rows, err := s.pool.Query(ctx, `SELECT table_name || '.' || column_name FROM information_schema.columns
WHERE table_schema = 'mesh' AND data_type = 'timestamp without time zone'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		_ = rows.Scan(&c)
		naive = append(naive, c)
	}
	rows.Close()
	if len(naive) > 0 {
		t.Fatalf("timestamp without time zone columns: %v", naive)
	}
	for _, table := range []string{"mesh", "member", "invite", "cli_session", "presence", "pending_status",
		"message_queue", "audit_log", "peer_state", "state", "stream", "scheduled_message", "node"} {
		var n int
		if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM mesh."+table).Scan(&n); err != nil {
			t.Errorf("table mesh.%s: %v", table, err)
		}
	}
}

// Two files with one number apply in name order, which nobody chose: each
// migration takes the next free number when it lands.
func TestMigrationNumbersUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, m := range Migrations() {
		num, _, ok := strings.Cut(m.Name, "_")
		if !ok || len(num) != 4 {
			t.Errorf("%s: want NNNN_name.sql", m.Name)
			continue
		}
		if prev, dup := seen[num]; dup {
			t.Errorf("%s and %s share the number %s", prev, m.Name, num)
		}
		seen[num] = m.Name
	}
}
