package broker_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/audit"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/fanout"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/jobs"
	"github.com/meshd/meshd/store"
	"github.com/meshd/meshd/wire"
)

func TestMain(m *testing.M) { testpg.Main(m) }

var (
	natsOnce sync.Once
	natsSrv  *fanout.EmbeddedServer
	natsErr  error
)

// natsURL returns a real NATS server shared by the package's tests; each
// test isolates itself with its own subject prefix.
func natsURL(t testing.TB) string {
	natsOnce.Do(func() { natsSrv, natsErr = fanout.StartEmbedded(fanout.EmbeddedConfig{Port: -1}) })
	if natsErr != nil {
		t.Fatalf("embedded nats: %v", natsErr)
	}
	return natsSrv.ClientURL()
}

// replica is one broker.Server behind an httptest server, with the leader
// jobs of its node (run by tests, or the upkeep by the first replica).
type replica struct {
	srv  *broker.Server
	jobs *jobs.Jobs
	reg  *prometheus.Registry
	hs   *httptest.Server
	bus  *fanout.Bus
}

func (r *replica) wsURL() string { return "ws" + strings.TrimPrefix(r.hs.URL, "http") + "/ws" }

// env is a database plus one or more replicas sharing it and one NATS
// prefix: a cluster in one process.
type env struct {
	t        testing.TB
	st       *store.Store
	dsn      string
	prefix   string
	replicas []*replica
}

func newEnv(t testing.TB, n int, tweak func(*broker.Config)) *env {
	t.Helper()
	ctx := context.Background()
	dsn := testpg.NewDatabase(t)
	st, err := store.New(ctx, store.Config{URL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, dsn: dsn, prefix: "t" + meshd.NewID()[20:]}
	for i := 0; i < n; i++ {
		e.replicas = append(e.replicas, e.startReplica(fmt.Sprintf("node-%d", i), tweak))
	}
	return e
}

func (e *env) startReplica(node string, tweak func(*broker.Config)) *replica {
	t := e.t
	reg := prometheus.NewRegistry()
	bus, err := fanout.New(context.Background(), fanout.Config{URL: natsURL(t), Prefix: e.prefix, Registerer: reg, Linger: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("node", node).Logger()
	aw := runAudit(t, e.st, reg, log)
	cfg := broker.Config{
		NodeID: node, Store: e.st, CollabStore: e.st, Fanout: bus, NATS: bus, Registry: reg, Logger: log,
		Audit: aw, RedrainInterval: 200 * time.Millisecond, SweepInterval: 200 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lj, err := jobs.New(jobs.Config{Store: e.st, Fanout: bus, Audit: aw, Router: srv, Registry: reg, Logger: log,
		SweepInterval: cfg.SweepInterval, Grace: cfg.Grace, HookFreshWindow: cfg.HookFreshWindow})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(context.Background())
	// The upkeep runs on the first replica only, as under a leader:
	// cross-replica tests then show peer_left etc. crossing over.
	upkeepCtx, stopUpkeep := context.WithCancel(context.Background())
	upkeepDone := make(chan error, 1)
	if len(e.replicas) == 0 {
		go func() { upkeepDone <- lj.Upkeep(upkeepCtx) }()
	} else {
		upkeepDone <- nil
	}
	hs := httptest.NewServer(srv.Handler())
	r := &replica{srv: srv, jobs: lj, reg: reg, hs: hs, bus: bus}
	t.Cleanup(func() {
		stopUpkeep()
		if err := <-upkeepDone; err != nil {
			t.Errorf("upkeep: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
		_ = bus.Close()
	})
	return r
}

// identity is an enrolled member with its keys.
type identity struct {
	mesh   meshd.Mesh
	member meshd.Member
	key    client.Identity
}

func (e *env) newMesh(name string) meshd.Mesh {
	e.t.Helper()
	m := meshd.Mesh{Name: name, Slug: strings.ToLower(name) + "-" + meshd.NewID()[24:], OwnerUserID: "owner-user"}
	if err := e.st.CreateMesh(context.Background(), &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

func (e *env) enroll(mesh meshd.Mesh, name string) identity {
	e.t.Helper()
	key := client.GenerateIdentity()
	m := meshd.Member{MeshID: mesh.ID, UserID: "user-" + name, Pubkey: key.Pubkey, DisplayName: name, Role: "member"}
	if err := e.st.CreateMember(context.Background(), &m); err != nil {
		e.t.Fatal(err)
	}
	return identity{mesh: mesh, member: m, key: key}
}

// dial connects id to replica i with the Go client (member-key hello).
func (e *env) dial(i int, id identity, mut func(*client.Config)) *client.Client {
	e.t.Helper()
	cfg := client.Config{URL: e.replicas[i].wsURL(), MeshID: id.mesh.ID, MemberID: id.member.ID, Member: id.key,
		DisplayName: id.member.DisplayName, CWD: "/work/" + id.member.DisplayName, PID: 4242}
	if mut != nil {
		mut(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		e.t.Fatalf("dial %s: %v", id.member.DisplayName, err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawConn is a bare WebSocket for hostile frames.
type rawConn struct {
	t  testing.TB
	ws *websocket.Conn
}

func (e *env) raw(i int) *rawConn {
	e.t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(e.replicas[i].wsURL(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = ws.Close() })
	return &rawConn{t: e.t, ws: ws}
}

func (r *rawConn) send(v any) {
	r.t.Helper()
	var data []byte
	switch x := v.(type) {
	case string:
		data = []byte(x)
	case []byte:
		data = x
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := r.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		r.t.Fatal(err)
	}
}

// next reads one frame as a map; on close it returns the close error.
func (r *rawConn) next(timeout time.Duration) (map[string]any, *websocket.CloseError, error) {
	_ = r.ws.SetReadDeadline(time.Now().Add(timeout))
	_, data, err := r.ws.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return nil, ce, nil
		}
		return nil, nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, fmt.Errorf("frame %q: %w", data, err)
	}
	return m, nil, nil
}

// expectFrame reads until a frame of type typ arrives.
func (r *rawConn) expectFrame(typ string) map[string]any {
	r.t.Helper()
	for {
		m, ce, err := r.next(5 * time.Second)
		if err != nil {
			r.t.Fatalf("waiting for %s: %v", typ, err)
		}
		if ce != nil {
			r.t.Fatalf("waiting for %s: closed %d %q", typ, ce.Code, ce.Text)
		}
		if m["type"] == typ {
			return m
		}
	}
}

// expectClose reads until the socket closes and returns the close frame.
func (r *rawConn) expectClose() *websocket.CloseError {
	r.t.Helper()
	for {
		_, ce, err := r.next(5 * time.Second)
		if err != nil {
			r.t.Fatalf("waiting for close: %v", err)
		}
		if ce != nil {
			return ce
		}
	}
}

// helloFrame builds a valid member-key hello for id at now.
func helloFrame(id identity, now time.Time) map[string]any {
	ts := float64(now.UnixMilli())
	return map[string]any{
		"type": "hello", "meshId": id.mesh.ID, "memberId": id.member.ID, "pubkey": id.key.Pubkey,
		"sessionId": "sess-" + id.member.DisplayName, "pid": 7, "cwd": "/tmp", "timestamp": ts,
		"signature": wire.Sign(id.key.Secret, wire.HelloCanonical(id.mesh.ID, id.member.ID, id.key.Pubkey, ts)),
	}
}

// sessionHelloFrame builds a valid session_hello for id's session key.
func sessionHelloFrame(id identity, sess client.Identity, now time.Time, ttl time.Duration) map[string]any {
	ts := float64(now.UnixMilli())
	exp := float64(now.Add(ttl).UnixMilli())
	return map[string]any{
		"type": "session_hello", "meshId": id.mesh.ID, "parentMemberId": id.member.ID,
		"parentMemberPubkey": id.key.Pubkey, "sessionPubkey": sess.Pubkey,
		"parentAttestation": map[string]any{
			"sessionPubkey": sess.Pubkey, "parentMemberPubkey": id.key.Pubkey, "expiresAt": exp,
			"signature": wire.Sign(id.key.Secret, wire.AttestationCanonical(id.key.Pubkey, sess.Pubkey, exp)),
		},
		"sessionId": "sess-" + sess.Pubkey[:8], "pid": 8, "cwd": "/tmp", "timestamp": ts,
		"signature": wire.Sign(sess.Secret, wire.SessionHelloCanonical(id.mesh.ID, id.key.Pubkey, sess.Pubkey, ts)),
	}
}

// resign recomputes the hello signature after a test mutated fields.
func resign(f map[string]any, key ed25519.PrivateKey) {
	f["signature"] = wire.Sign(key, wire.HelloCanonical(f["meshId"].(string), f["memberId"].(string), f["pubkey"].(string), f["timestamp"].(float64)))
}

func counter(t *testing.T, r *replica, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	return 0
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// recvPush waits for the next non-system push on c.
func recvPush(t *testing.T, c *client.Client, d time.Duration) client.Message {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-c.Pushes():
			if !ok {
				t.Fatal("push channel closed")
			}
			if m.Push.Subtype == "system" {
				continue
			}
			return m
		case <-timeout:
			t.Fatal("no push within deadline")
		}
	}
}

// queryInt runs a query returning one integer against dsn.
func queryInt(t testing.TB, dsn, sql string, args ...any) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// runAudit starts an audit writer on st for the test; it stops after the
// cleanups registered later (the broker's Shutdown) have run.
func runAudit(t testing.TB, st *store.Store, reg prometheus.Registerer, log zerolog.Logger) *audit.Writer {
	t.Helper()
	aw, err := audit.New(audit.Config{Store: st, Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- aw.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("audit writer: %v", err)
		}
	})
	return aw
}

// ownCluster starts a PostgreSQL cluster of the test's own (one it may stop
// and restart, unlike the shared one) and a migrated Store on it.
func ownCluster(t *testing.T) (*testpg.Cluster, *store.Store) {
	t.Helper()
	ctx := context.Background()
	pg, err := testpg.Start(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Stop)
	st, err := store.New(ctx, store.Config{URL: pg.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return pg, st
}
