package audit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/audit"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/store"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// fixture is a migrated database with one mesh and one member.
type fixture struct {
	t      *testing.T
	dsn    string
	st     *store.Store
	mesh   meshd.Mesh
	member meshd.Member
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dsn := testpg.NewDatabase(t)
	st, err := store.New(ctx, store.Config{URL: dsn, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, dsn: dsn, st: st}
	f.mesh = meshd.Mesh{Name: "A", Slug: "a-" + meshd.NewID()[24:], OwnerUserID: "o"}
	if err := st.CreateMesh(ctx, &f.mesh); err != nil {
		t.Fatal(err)
	}
	f.member = meshd.Member{MeshID: f.mesh.ID, UserID: "u", Pubkey: strings.Repeat("cd", 32), DisplayName: "ann", Role: "member"}
	if err := st.CreateMember(ctx, &f.member); err != nil {
		t.Fatal(err)
	}
	return f
}

// writer is a Writer with its registry and log.
type writer struct {
	*audit.Writer
	reg *prometheus.Registry
	log *syncBuffer
}

func (f *fixture) writer(st audit.Store) *writer {
	f.t.Helper()
	w := &writer{reg: prometheus.NewRegistry(), log: &syncBuffer{}}
	var err error
	w.Writer, err = audit.New(audit.Config{Store: st, Registry: w.reg, Poll: 20 * time.Millisecond,
		Logger: zerolog.New(w.log).With().Str("node", "n1").Logger()})
	if err != nil {
		f.t.Fatal(err)
	}
	return w
}

// run runs w until the test ends (or stop is called) and returns stop,
// which cancels Run and returns its error.
func (w *writer) run(t *testing.T) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func (w *writer) counter(t *testing.T, name, reason string) float64 {
	t.Helper()
	mfs, err := w.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if reason == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == reason) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (f *fixture) count(query string, args ...any) int {
	f.t.Helper()
	conn, err := pgx.Connect(context.Background(), f.dsn)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (f *fixture) exec(query string) {
	f.t.Helper()
	conn, err := pgx.Connect(context.Background(), f.dsn)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), query); err != nil {
		f.t.Fatalf("%s: %v", query, err)
	}
}

func (f *fixture) chained() int {
	return f.count(`SELECT count(*) FROM mesh.audit_log WHERE mesh_id = $1`, f.mesh.ID)
}

// stored counts the mesh's events in the chain and the outbox in one
// snapshot (a writer may move them between two statements).
func (f *fixture) stored() int {
	return f.count(`SELECT (SELECT count(*) FROM mesh.audit_log WHERE mesh_id = $1) +
		(SELECT count(*) FROM mesh.audit_outbox WHERE mesh_id = $1)`, f.mesh.ID)
}

func (f *fixture) outboxed() int {
	return f.count(`SELECT count(*) FROM mesh.audit_outbox WHERE mesh_id = $1`, f.mesh.ID)
}

func (f *fixture) verify() (bool, int) {
	f.t.Helper()
	ok, n, _, err := f.st.VerifyAudit(context.Background(), f.mesh.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	return ok, n
}

func (f *fixture) event(i int) meshd.AuditEvent {
	id := f.member.ID
	return meshd.AuditEvent{EventType: "state_set", ActorMemberID: &id, ActorDisplayName: "ann",
		Payload: map[string]any{"key": fmt.Sprint("k", i), "value": i}}
}

// Record returns once its event is durable (in the outbox, or already in
// the chain); Sync then has it in the chain, which verifies.
func TestRecordIsDurableWhenItReturns(t *testing.T) {
	f := newFixture(t)
	w := f.writer(f.st)
	w.run(t)
	ctx := context.Background()
	w.Record(ctx, f.mesh.ID, f.event(1))
	if n := f.stored(); n != 1 {
		t.Fatalf("%d events stored after Record returned, want 1", n)
	}
	w.Sync(ctx, f.mesh.ID)
	if ok, n := f.verify(); !ok || n != 1 || f.outboxed() != 0 {
		t.Fatalf("after Sync: valid %v, %d entries, %d in the outbox", ok, n, f.outboxed())
	}
}

// Run's end writes what is still queued and chains it: events recorded
// before a Run that is already cancelled are in the chain when it returns.
func TestRunFlushesOnExit(t *testing.T) {
	f := newFixture(t)
	w := f.writer(f.st)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 3 {
		w.Record(gone, f.mesh.ID, f.event(i)) // queued; returns at once
	}
	if n := f.stored(); n != 0 {
		t.Fatalf("%d events stored before Run", n)
	}
	if err := w.Run(gone); err != nil {
		t.Fatal(err)
	}
	if ok, n := f.verify(); !ok || n != 3 {
		t.Fatalf("valid %v, %d entries, want 3", ok, n)
	}
	w.Record(context.Background(), f.mesh.ID, f.event(4)) // after Run: written directly
	if n := f.outboxed(); n != 1 {
		t.Fatalf("%d events in the outbox after a late Record, want 1", n)
	}
}

// failing is the real store whose outbox inserts report their errors.
type failing struct {
	*store.Store
	failed chan error
}

func (s failing) InsertAuditOutbox(ctx context.Context, evs []meshd.MeshAuditEvent) error {
	err := s.Store.InsertAuditOutbox(ctx, evs)
	if err != nil {
		select {
		case s.failed <- err:
		default:
		}
	}
	return err
}

// While the outbox cannot be written Record waits (the event is never
// dropped); once the database takes it again the event is written.
func TestRecordRetriesUntilWritten(t *testing.T) {
	f := newFixture(t)
	st := failing{Store: f.st, failed: make(chan error, 1)}
	w := f.writer(st)
	w.run(t)
	f.exec(`ALTER TABLE mesh.audit_outbox RENAME TO audit_outbox_away`)
	recorded := make(chan struct{})
	go func() {
		w.Record(context.Background(), f.mesh.ID, f.event(1))
		close(recorded)
	}()
	if err := <-st.failed; err == nil {
		t.Fatal("no failure reported")
	}
	select {
	case <-recorded:
		t.Fatal("Record returned while its event could not be written")
	default:
	}
	f.exec(`ALTER TABLE mesh.audit_outbox_away RENAME TO audit_outbox`)
	<-recorded
	w.Sync(context.Background(), f.mesh.ID)
	if ok, n := f.verify(); !ok || n != 1 {
		t.Fatalf("valid %v, %d entries, want 1", ok, n)
	}
	if d := w.counter(t, "broker_audit_dropped_total", "write_failed"); d != 0 {
		t.Fatalf("write_failed %v", d)
	}
}

// An event the database refuses (a NUL character in its payload) is the
// one thing dropped, and counted; the rest of its batch is written. Log
// lines name the component once.
func TestRefusedEventDroppedAlone(t *testing.T) {
	f := newFixture(t)
	w := f.writer(f.st)
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	bad := f.event(2)
	bad.Payload = map[string]any{"value": "nul\x00"}
	for _, ev := range []meshd.AuditEvent{f.event(1), bad, f.event(3)} {
		w.Record(gone, f.mesh.ID, ev)
	}
	if err := w.Run(gone); err != nil {
		t.Fatal(err)
	}
	if ok, n := f.verify(); !ok || n != 2 {
		t.Fatalf("valid %v, %d entries, want 2", ok, n)
	}
	if d := w.counter(t, "broker_audit_dropped_total", "invalid_payload"); d != 1 {
		t.Fatalf("invalid_payload %v, want 1", d)
	}
	lines := strings.Split(strings.TrimSpace(w.log.String()), "\n")
	for _, l := range lines {
		if strings.Count(l, `"component"`) != 1 || !strings.Contains(l, `"component":"audit"`) {
			t.Errorf("log line: %s", l)
		}
	}
	if !strings.Contains(w.log.String(), "refused by the database") {
		t.Fatalf("no log of the refused event: %s", w.log.String())
	}
}

// Two replicas' writers, recorded events and sends (whose events the store
// commits with the queue rows, no writer involved) all end in one linear
// chain; each event is chained once, by whichever writer got the lock.
func TestTwoWritersOneChain(t *testing.T) {
	f := newFixture(t)
	ws := []*writer{f.writer(f.st), f.writer(f.st)}
	for _, w := range ws {
		w.run(t)
	}
	const each = 100
	var wg sync.WaitGroup
	var sendErr error
	var mu sync.Mutex
	for i, w := range ws {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range each {
				w.Record(context.Background(), f.mesh.ID, f.event(i*each+j))
			}
		}()
		go func() {
			defer wg.Done()
			for range each / 10 {
				err := f.st.EnqueueBatch(context.Background(), f.messages(10), make([]bool, 10))
				mu.Lock()
				sendErr = errors.Join(sendErr, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if sendErr != nil {
		t.Fatal(sendErr)
	}
	want := 4 * each
	for _, w := range ws {
		w.Sync(context.Background(), f.mesh.ID)
	}
	if ok, n := f.verify(); !ok || n != want || f.outboxed() != 0 {
		t.Fatalf("valid %v, %d entries (want %d), %d left in the outbox", ok, n, want, f.outboxed())
	}
	var moved float64
	for _, w := range ws {
		moved += w.counter(t, "broker_audit_events_total", "")
	}
	if moved != float64(want) {
		t.Fatalf("writers chained %v events, want %d", moved, want)
	}
}

// A replica that died leaves its events in the outbox; another replica's
// writer chains them without being asked.
func TestOrphanedOutboxIsChained(t *testing.T) {
	f := newFixture(t)
	if err := f.st.EnqueueBatch(context.Background(), f.messages(5), make([]bool, 5)); err != nil {
		t.Fatal(err)
	}
	if n := f.outboxed(); n != 5 {
		t.Fatalf("%d events in the outbox, want 5", n)
	}
	w := f.writer(f.st)
	w.run(t)
	deadline := time.Now().Add(30 * time.Second)
	for f.chained() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polls a condition; Poll is 20ms
	}
	if ok, n := f.verify(); !ok || n != 5 || f.outboxed() != 0 {
		t.Fatalf("valid %v, %d entries, %d left in the outbox", ok, n, f.outboxed())
	}
}

func (f *fixture) messages(n int) []*meshd.QueuedMessage {
	qs := make([]*meshd.QueuedMessage, n)
	for i := range qs {
		qs[i] = &meshd.QueuedMessage{MeshID: f.mesh.ID, SenderMemberID: f.member.ID, TargetSpec: f.member.Pubkey,
			Nonce: "n", Ciphertext: "c", SenderName: "ann"}
	}
	return qs
}
