package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/fanout"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/store"
)

// The audit test: two real meshd processes on one PostgreSQL and
// one NATS write 2,000+ audit events to one mesh concurrently; the chain
// verifies with `meshd audit verify` (exit 0) and has no fork; tampering
// with one row makes the command exit 1 naming that row.
func TestAuditChainTwoProcesses(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	ns, err := fanout.StartEmbedded(fanout.EmbeddedConfig{Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	common := []string{"DATABASE_URL=" + dsn, "NATS_URL=" + ns.ClientURL(), "SEND_RATE_BURST=1000000", "SEND_RATE_PER_MIN=1000000000"}
	procs := []*proc{
		startMeshd(t, append(common, "MESHD_NODE_ID=audit-a")...),
		startMeshd(t, append(common, "MESHD_NODE_ID=audit-b")...),
	}
	const senders, each = 20, 100
	ms := enroll(t, dsn, senders+1)
	offline := ms[senders] // never connects: every DM to it is queued, no push traffic
	meshID := offline.mesh.ID

	elapsed := sendConcurrently(t, procs, ms[:senders], offline.key.Pubkey, each)
	want := senders + senders*each // peer_joined + message_sent
	t.Logf("%d sends through 2 processes in %v: %.0f sends/s (each audited)", senders*each, elapsed.Round(time.Millisecond),
		float64(senders*each)/elapsed.Seconds())

	conn := pgConn(t, dsn)
	start := time.Now()
	waitRows(t, conn, meshID, want)
	t.Logf("all %d audit rows present %v after the last ack", want, time.Since(start).Round(time.Millisecond))
	checkAuditMetrics(t, procs, want)

	var mislinked, shared int
	if err := conn.QueryRow(context.Background(), `
SELECT
	(SELECT count(*) FROM (SELECT prev_hash, lag(hash, 1, 'genesis') OVER (ORDER BY id) AS w
		FROM mesh.audit_log WHERE mesh_id = $1) x WHERE prev_hash <> w),
	(SELECT count(*) - count(DISTINCT prev_hash) FROM mesh.audit_log WHERE mesh_id = $1)`, meshID).Scan(&mislinked, &shared); err != nil {
		t.Fatal(err)
	}
	if mislinked != 0 || shared != 0 {
		t.Fatalf("forks: %d rows not linked to their predecessor, %d shared prev_hash", mislinked, shared)
	}

	out, code := runAuditVerify(t, dsn, meshID)
	if code != 0 || out != fmt.Sprintf("mesh %s: %d entries, chain valid\n", meshID, want) {
		t.Fatalf("exit %d: %q", code, out)
	}

	var id int64
	const k = 1000
	if err := conn.QueryRow(context.Background(), `SELECT id FROM mesh.audit_log WHERE mesh_id = $1 ORDER BY id OFFSET $2 LIMIT 1`,
		meshID, k-1).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), `UPDATE mesh.audit_log SET payload = '{"targetSpec":"*","priority":"now"}' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	out, code = runAuditVerify(t, dsn, meshID)
	wantOut := fmt.Sprintf("mesh %s: %d entries, chain BROKEN at row %d (entry %d of %d)", meshID, want, id, k, want)
	if code != 1 || !strings.HasPrefix(out, wantOut) {
		t.Fatalf("after tampering row %d: exit %d: %q, want prefix %q", id, code, out, wantOut)
	}
}

// sendConcurrently dials every sender (alternating between procs) and has
// each send `each` DMs to target; it returns how long the sends took.
func sendConcurrently(t *testing.T, procs []*proc, senders []member, target string, each int) time.Duration {
	t.Helper()
	cls := make([]*client.Client, len(senders))
	for i, mb := range senders {
		cls[i] = dial(t, procs[i%len(procs)], mb, false)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(cls))
	for i, c := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < each; j++ {
				if _, err := c.Send(context.Background(), target, meshd.PriorityNext, []byte(fmt.Sprint(i, j))); err != nil {
					errs <- fmt.Errorf("sender %d send %d: %w", i, j, err)
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
	return time.Since(start)
}

func pgConn(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func waitRows(t *testing.T, conn *pgx.Conn, meshID string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var n int
	for time.Now().Before(deadline) {
		if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM mesh.audit_log WHERE mesh_id = $1`, meshID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= want {
			if n != want {
				t.Fatalf("%d audit rows, want %d", n, want)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d of %d audit rows after 30 s", n, want)
}

// checkAuditMetrics checks that both processes wrote events, in batches,
// and dropped none. A writer counts its batch after the commit the caller
// already saw, so the counters may trail the rows for a moment: they are
// read until they reach want (10 s at most), then must match it exactly.
func checkAuditMetrics(t *testing.T, procs []*proc, want int) {
	t.Helper()
	var events, writes float64
	per := make([][2]float64, len(procs)) // each process's events and drops, last scrape
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		events, writes = 0, 0
		for i, p := range procs {
			e, w, dropped := auditMetrics(t, p.base+"/metrics")
			per[i] = [2]float64{e, dropped}
			events += e
			writes += w
		}
		if events >= float64(want) || time.Now().After(deadline) {
			break
		}
	}
	for i, p := range procs {
		if e, dropped := per[i][0], per[i][1]; e == 0 || dropped != 0 {
			t.Errorf("%s: %v events written, %v dropped", p.base, e, dropped)
		}
	}
	if events != float64(want) {
		t.Errorf("processes report %v events written, want %d", events, want)
	}
	t.Logf("%v events in %v AppendAudit transactions (%.1f events per transaction)", events, writes, events/writes)
}

// auditMetrics scrapes the writer's series: events written, batch writes
// (the histogram's count) and drops over all reasons.
func auditMetrics(t *testing.T, url string) (events, writes, dropped float64) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	tp := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := tp.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mfs["broker_audit_events_total"].GetMetric() {
		events += m.GetCounter().GetValue()
	}
	for _, m := range mfs["broker_audit_write_seconds"].GetMetric() {
		writes += float64(m.GetHistogram().GetSampleCount())
	}
	for _, m := range mfs["broker_audit_dropped_total"].GetMetric() {
		dropped += m.GetCounter().GetValue()
	}
	return events, writes, dropped
}

// runAuditVerify runs the real binary's `audit verify` and returns its
// stdout and exit code.
func runAuditVerify(t *testing.T, dsn, meshID string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, meshdBinary(t), "audit", "verify", "--mesh", meshID)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "LOG_LEVEL=warn")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code <= 0 {
		t.Fatalf("audit verify: %v\n%s", err, stderr.String())
	}
	return stdout.String(), code
}

// The command line, through run() as main calls it.
func TestAuditCommandLine(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	getenv := func(k string) string {
		if k == "DATABASE_URL" {
			return dsn
		}
		return ""
	}
	ctx := context.Background()
	if code := run(ctx, []string{"migrate"}, getenv, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("migrate exit %d", code)
	}
	ms := createMesh(t, dsn, "Verify")
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{"help", []string{"audit", "--help"}, 0, "usage: meshd audit verify --mesh <id or slug>", ""},
		{"verify help", []string{"audit", "verify", "--help"}, 0, "usage: meshd audit verify", ""},
		{"no subcommand", []string{"audit"}, 1, "usage:", "missing subcommand"},
		{"unknown subcommand", []string{"audit", "repair"}, 1, "", `unknown subcommand "repair"`},
		{"missing --mesh", []string{"audit", "verify"}, 1, "", "--mesh <id or slug> is required"},
		{"unknown flag", []string{"audit", "verify", "--mesh", "m", "--fix"}, 1, "", "flag provided but not defined"},
		{"unknown mesh", []string{"audit", "verify", "--mesh", "nosuchmesh"}, 2, "", `unknown mesh "nosuchmesh"`},
		{"empty chain by id is valid", []string{"audit", "verify", "--mesh", ms.ID}, 0, "mesh " + ms.ID + ": 0 entries, chain valid\n", ""},
		{"by slug", []string{"audit", "verify", "--mesh", ms.Slug}, 0, "mesh " + ms.ID + ": 0 entries, chain valid\n", ""},
		{"slug typo", []string{"audit", "verify", "--mesh", ms.Slug + "x"}, 2, "", "unknown mesh"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(ctx, tc.args, getenv, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout %q\nstderr %q", code, tc.code, stdout.String(), stderr.String())
			}
		})
	}
	t.Run("no DATABASE_URL", func(t *testing.T) {
		var stderr bytes.Buffer
		if code := run(ctx, []string{"audit", "verify", "--mesh", "m"}, func(string) string { return "" }, &bytes.Buffer{}, &stderr); code != 1 ||
			!strings.Contains(stderr.String(), "DATABASE_URL") {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	})
}

// createMesh makes a mesh with a slug in dsn's database.
func createMesh(t *testing.T, dsn, name string) meshd.Mesh {
	t.Helper()
	st, err := store.New(context.Background(), store.Config{URL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ms := meshd.Mesh{Name: name, Slug: strings.ToLower(name) + "-" + meshd.NewID()[24:], OwnerUserID: "owner"}
	if err := st.CreateMesh(context.Background(), &ms); err != nil {
		t.Fatal(err)
	}
	return ms
}

// `audit verify` reports acked messages whose message_sent is missing: an
// event still in the outbox counts as present; after the chain's tail
// entry (a message_sent) is deleted the chain still verifies, but the
// command names the message and exits 1.
func TestAuditVerifyReportsMissingEvents(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	getenv := func(k string) string { return map[string]string{"DATABASE_URL": dsn}[k] }
	ctx := context.Background()
	if code := run(ctx, []string{"migrate"}, getenv, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("migrate exit %d", code)
	}
	ms := createMesh(t, dsn, "Missing")
	st, err := store.New(ctx, store.Config{URL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mb := meshd.Member{MeshID: ms.ID, UserID: "u", Pubkey: strings.Repeat("ab", 32), DisplayName: "mo", Role: "member"}
	if err := st.CreateMember(ctx, &mb); err != nil {
		t.Fatal(err)
	}
	var qs []*meshd.QueuedMessage
	for range 3 {
		qs = append(qs, &meshd.QueuedMessage{MeshID: ms.ID, SenderMemberID: mb.ID, TargetSpec: "*", Nonce: "n", Ciphertext: "c", SenderName: "mo"})
	}
	if err := st.EnqueueBatch(ctx, qs[:2], []bool{true, true}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.ChainAuditOutbox(ctx, ms.ID, true, 100); err != nil {
		t.Fatal(err)
	}
	if err := st.EnqueueBatch(ctx, qs[2:], []bool{false}); err != nil { // stays in the outbox
		t.Fatal(err)
	}
	verify := func() (int, string) {
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"audit", "verify", "--mesh", ms.ID}, getenv, &stdout, &stderr)
		return code, stdout.String()
	}
	if code, out := verify(); code != 0 || out != fmt.Sprintf("mesh %s: 2 entries, chain valid\n", ms.ID) {
		t.Fatalf("exit %d: %q", code, out)
	}
	tag, err := pgConn(t, dsn).Exec(ctx, `DELETE FROM mesh.audit_log WHERE message_id = $1 AND event_type = 'message_sent'
		AND id = (SELECT max(id) FROM mesh.audit_log WHERE mesh_id = $2)`, qs[1].ID, ms.ID)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("delete the tail entry: %v %v", tag, err)
	}
	want := fmt.Sprintf("mesh %s: 1 entries, chain valid\nmesh %s: 1 acked messages have no message_sent event (e.g. %s)\n", ms.ID, ms.ID, qs[1].ID)
	if code, out := verify(); code != 1 || out != want {
		t.Fatalf("exit %d: %q, want %q", code, out, want)
	}
}
