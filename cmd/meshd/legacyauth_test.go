package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/store"
)

// `meshd legacy-auth report` lists who still uses the legacy shim, within
// --since (default 7 days), as a table or --json.
func TestLegacyAuthReport(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	getenv := func(k string) string { return map[string]string{"DATABASE_URL": dsn}[k] }
	ctx := context.Background()
	if code := run(ctx, []string{"migrate"}, getenv, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("migrate exit %d", code)
	}
	st, err := store.New(ctx, store.Config{URL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	if err := st.RecordLegacyAuthHits(ctx, []store.LegacyAuthHits{
		{UserID: "alice", Route: "GET /cli/meshes", First: now.Add(-time.Hour), Last: now, Count: 4},
		{UserID: "bob", Route: "POST /cli/mesh/create", First: now.Add(-30 * 24 * time.Hour), Last: now.Add(-20 * 24 * time.Hour), Count: 1},
	}); err != nil {
		t.Fatal(err)
	}
	report := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(ctx, append([]string{"legacy-auth", "report"}, args...), getenv, &out, &errb)
		return out.String(), errb.String(), code
	}
	out, errOut, code := report()
	if code != 0 || !strings.Contains(out, "alice") || strings.Contains(out, "bob") ||
		!strings.Contains(out, "GET /cli/meshes") || !strings.Contains(out, "1 user(s), 1 (user, route) pair(s)") {
		t.Fatalf("report (7d): %d %q %s", code, out, errOut)
	}
	out, errOut, code = report("--since", "60d", "--json")
	var uses []store.LegacyAuthUse
	if code != 0 || json.Unmarshal([]byte(out), &uses) != nil || len(uses) != 2 ||
		uses[0].UserID != "alice" || uses[0].Hits != 4 || uses[1].UserID != "bob" {
		t.Fatalf("report --since 60d --json: %d %q %s", code, out, errOut)
	}
	if _, errOut, code := report("--since", "soon"); code != 1 || !strings.Contains(errOut, "--since") {
		t.Fatalf("bad --since: %d %q", code, errOut)
	}
}
