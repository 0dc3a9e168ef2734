package ha

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

func TestMain(m *testing.M) { testpg.Main(m) }

const (
	testInterval = 50 * time.Millisecond
	// waitLimit is a generous bound for anything that should take a few
	// intervals; tests never assert on speed beyond it.
	waitLimit = 15 * time.Second
)

// jobs tracks every job func of a test: active must never exceed 1.
type jobs struct {
	active  atomic.Int32
	overlap atomic.Bool
}

var replicaSeq atomic.Int32

// replica is one Leader running its job in its own Run.
type replica struct {
	l      *Leader
	starts atomic.Int32
	causes chan error // context.Cause of each ended term
	stop   func()     // cancels Run and waits for it to return
}

func newReplica(t *testing.T, dsn string, key int64, js *jobs) *replica {
	t.Helper()
	l, err := NewLeader(Config{DSN: dsn, Key: key, Name: "test_job", Interval: testInterval, Registerer: prometheus.NewRegistry(),
		Logger: zerolog.New(zerolog.NewTestWriter(t)).With().Timestamp().Str("replica", t.Name()+"/"+strconv.Itoa(int(replicaSeq.Add(1)))).Logger()})
	if err != nil {
		t.Fatalf("NewLeader: %v", err)
	}
	r := &replica{l: l, causes: make(chan error, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- l.Run(ctx, func(leaderCtx context.Context) error {
			if js.active.Add(1) > 1 {
				js.overlap.Store(true)
			}
			r.starts.Add(1)
			<-leaderCtx.Done()
			js.active.Add(-1)
			r.causes <- context.Cause(leaderCtx)
			return leaderCtx.Err()
		})
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-ran:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitLimit):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leaderOf waits until exactly one replica leads and returns it and the other.
func leaderOf(t *testing.T, a, b *replica) (leader, follower *replica) {
	t.Helper()
	eventually(t, "one replica leads", func() bool { return a.l.IsLeader() || b.l.IsLeader() })
	if a.l.IsLeader() {
		return a, b
	}
	return b, a
}

func gaugeValue(t *testing.T, l *Leader) float64 {
	t.Helper()
	var m dto.Metric
	if err := l.gauge.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func checkNoOverlap(t *testing.T, js *jobs) {
	t.Helper()
	if js.overlap.Load() {
		t.Fatal("two job funcs ran at the same time")
	}
}

func TestExactlyOneLeaderRunsTheJob(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	js := &jobs{}
	a, b := newReplica(t, dsn, 101, js), newReplica(t, dsn, 101, js)
	leader, follower := leaderOf(t, a, b)
	eventually(t, "the job starts", func() bool { return leader.starts.Load() == 1 })

	time.Sleep(10 * testInterval) // the follower keeps trying and failing
	if leader.starts.Load() != 1 || follower.starts.Load() != 0 || follower.l.IsLeader() {
		t.Fatalf("starts: leader %d, follower %d (leading %v); want 1, 0", leader.starts.Load(), follower.starts.Load(), follower.l.IsLeader())
	}
	if g, f := gaugeValue(t, leader.l), gaugeValue(t, follower.l); g != 1 || f != 0 {
		t.Fatalf("broker_leader: leader %v, follower %v", g, f)
	}
	checkNoOverlap(t, js)
}

func TestDifferentKeysLeadIndependently(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	a, b := newReplica(t, dsn, 201, &jobs{}), newReplica(t, dsn, 202, &jobs{})
	eventually(t, "both lead their own key", func() bool { return a.l.IsLeader() && b.l.IsLeader() })
}

func TestTerminatedBackendHandsOver(t *testing.T) {
	const key = 301
	dsn := testpg.NewDatabase(t)
	js := &jobs{}
	a, b := newReplica(t, dsn, key, js), newReplica(t, dsn, key, js)
	leader, follower := leaderOf(t, a, b)

	admin := connect(t, dsn)
	waitCampaigners(t, admin, 2)
	pid := lockHolder(t, admin, key)
	var ok bool
	if err := admin.QueryRow(context.Background(), "SELECT pg_terminate_backend($1)", pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}

	select {
	case cause := <-leader.causes:
		if !errors.Is(cause, ErrLeadershipLost) {
			t.Fatalf("leader context cause = %v, want ErrLeadershipLost", cause)
		}
		t.Logf("cause: %v", cause)
	case <-time.After(waitLimit):
		t.Fatal("the old leader's context was not cancelled")
	}
	eventually(t, "the follower takes over", func() bool { return follower.l.IsLeader() && follower.starts.Load() == 1 })
	if leader.l.IsLeader() || gaugeValue(t, leader.l) != 0 {
		t.Fatal("the old leader still reports leading")
	}
	if got := lockHolder(t, admin, key); got == pid {
		t.Fatalf("lock still held by terminated backend %d", pid)
	}
	// The old leader reconnects and campaigns again as a follower.
	time.Sleep(10 * testInterval)
	if leader.l.IsLeader() || leader.starts.Load() != 1 {
		t.Fatalf("old leader: leading %v, starts %d", leader.l.IsLeader(), leader.starts.Load())
	}
	checkNoOverlap(t, js)
}

func TestStoppingLeaderHandsOver(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	js := &jobs{}
	a, b := newReplica(t, dsn, 401, js), newReplica(t, dsn, 401, js)
	leader, follower := leaderOf(t, a, b)
	leader.stop()
	select {
	case cause := <-leader.causes:
		if !errors.Is(cause, context.Canceled) {
			t.Fatalf("cause on stop = %v, want context.Canceled", cause)
		}
	default:
		t.Fatal("Run returned before the job did")
	}
	if leader.l.IsLeader() || gaugeValue(t, leader.l) != 0 {
		t.Fatal("a stopped leader still reports leading")
	}
	eventually(t, "the follower takes over", func() bool { return follower.l.IsLeader() })
	checkNoOverlap(t, js)

	// And back: a new replica takes over when this one stops too.
	c := newReplica(t, dsn, 401, js)
	follower.stop()
	eventually(t, "the third replica takes over", func() bool { return c.l.IsLeader() })
	checkNoOverlap(t, js)
}

func TestRepeatedFailoverNeverOverlaps(t *testing.T) {
	const key = 501
	dsn := testpg.NewDatabase(t)
	js := &jobs{}
	a, b := newReplica(t, dsn, key, js), newReplica(t, dsn, key, js)
	admin := connect(t, dsn)
	for i := range 5 {
		leaderOf(t, a, b)
		// Real failovers are not milliseconds apart: let the previous
		// leader finish its back-off and campaign again first.
		waitCampaigners(t, admin, 2)
		before := a.starts.Load() + b.starts.Load()
		pid := lockHolder(t, admin, key)
		if _, err := admin.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatal(err)
		}
		// Usually the follower wins (the loser backs off); under heavy load
		// the old leader may win its lock back, which is just as correct.
		eventually(t, "a new term starts", func() bool {
			return a.starts.Load()+b.starts.Load() == before+1 && (a.l.IsLeader() || b.l.IsLeader())
		})
		if got := lockHolder(t, admin, key); got == pid || got == 0 {
			t.Fatalf("lock holder after failover %d: pid %d (terminated %d)", i, got, pid)
		}
		checkNoOverlap(t, js)
	}
}

func TestJobReturningReleasesTheLock(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	l, err := NewLeader(Config{DSN: dsn, Key: 601, Name: "short_job", Interval: testInterval, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs atomic.Int32
	ran := make(chan error, 1)
	go func() { ran <- l.Run(ctx, func(context.Context) error { runs.Add(1); return nil }) }()
	eventually(t, "the job runs again after returning", func() bool { return runs.Load() >= 3 })
	if err := l.Run(ctx, func(context.Context) error { return nil }); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
}

func TestLockConnectionKeepalives(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	l, err := NewLeader(Config{DSN: dsn, Key: 701, Name: "ka", Interval: testInterval, Keepalive: 2 * time.Second, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := l.connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// testpg connects over TCP, where the server applies these settings.
	for name, want := range map[string]string{
		"tcp_keepalives_idle":     "2",
		"tcp_keepalives_interval": "2",
		"tcp_keepalives_count":    "3",
		"tcp_user_timeout":        "6000", // milliseconds
		"application_name":        "meshd-leader-ka",
	} {
		var got string
		if err := conn.QueryRow(context.Background(), "SELECT current_setting($1)", name).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	checkClientSocket(t, conn, 6*time.Second)
}

func TestConfigRejected(t *testing.T) {
	reg := prometheus.NewRegistry()
	dsn := "postgres://127.0.0.1:1/x"
	for name, cfg := range map[string]Config{
		"missing DSN":           {Name: "j", Registerer: reg},
		"bad DSN":               {DSN: "postgres://%zz", Name: "j", Registerer: reg},
		"missing Registerer":    {DSN: dsn, Name: "j"},
		"missing Name":          {DSN: dsn, Registerer: reg},
		"label-hostile Name":    {DSN: dsn, Name: "Job Name", Registerer: reg},
		"negative Interval":     {DSN: dsn, Name: "j", Registerer: reg, Interval: -time.Second},
		"Interval > Keepalive":  {DSN: dsn, Name: "j", Registerer: reg, Interval: 10 * time.Second},
		"sub-second Keepalive":  {DSN: dsn, Name: "j", Registerer: reg, Keepalive: time.Millisecond, Interval: time.Millisecond},
		"conflicting collector": {DSN: dsn, Name: "j", Registerer: conflicting(t)},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := NewLeader(cfg); err == nil {
				t.Fatal("NewLeader accepted the config")
			}
		})
	}
	// Two jobs may share a registry.
	for _, n := range []string{"job_a", "job_b"} {
		if _, err := NewLeader(Config{DSN: dsn, Name: n, Registerer: reg}); err != nil {
			t.Fatalf("NewLeader(%s) on a shared registry: %v", n, err)
		}
	}
}

func conflicting(t *testing.T) prometheus.Registerer {
	reg := prometheus.NewRegistry()
	if err := reg.Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "broker_leader", Help: "x"})); err != nil {
		t.Fatal(err)
	}
	return reg
}

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// lockHolder returns the pid of the backend holding advisory lock key (a
// bigint key is split into classid = high and objid = low 32 bits).
func lockHolder(t *testing.T, admin *pgx.Conn, key int64) int32 {
	t.Helper()
	var pid int32
	err := admin.QueryRow(context.Background(), `
		SELECT pid FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 1
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND classid::bigint = $1 AND objid::bigint = $2`,
		key>>32, key&0xffffffff).Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitCampaigners waits until n lock connections of test_job are open.
func waitCampaigners(t *testing.T, admin *pgx.Conn, n int) {
	t.Helper()
	eventually(t, "every replica campaigns", func() bool {
		var got int
		err := admin.QueryRow(context.Background(), `
			SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'meshd-leader-test_job' AND datname = current_database()`).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		return got == n
	})
}
