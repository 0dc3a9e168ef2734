package broker_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/fanout"
	"github.com/meshd/meshd/internal/testenv"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/jobs"
	"github.com/meshd/meshd/store"
	"github.com/meshd/meshd/wire"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// The cluster in one process is internal/testenv's; env and replica keep
// the short names the tests use.

// replica is one broker.Server behind an httptest server, with the leader
// jobs of its node (run by tests, or the upkeep by the first replica).
type replica struct {
	*testenv.Replica
	srv  *broker.Server
	jobs *jobs.Jobs
	reg  *prometheus.Registry
	hs   *httptest.Server
	bus  *fanout.Bus
}

func (r *replica) wsURL() string { return r.WSURL() }

func newReplica(r *testenv.Replica) *replica {
	return &replica{Replica: r, srv: r.Srv, jobs: r.Jobs, reg: r.Reg, hs: r.HS, bus: r.Bus}
}

// env is a database plus one or more replicas sharing it and one NATS
// prefix: a cluster in one process.
type env struct {
	*testenv.Env
	t        testing.TB
	st       *store.Store
	dsn      string
	prefix   string
	replicas []*replica
}

func newEnv(t testing.TB, n int, tweak func(*broker.Config)) *env {
	t.Helper()
	te := testenv.New(t, n, testenv.Options{Broker: tweak, Upkeep: true})
	e := &env{Env: te, t: t, st: te.St, dsn: te.DSN, prefix: te.Prefix}
	for _, r := range te.Replicas {
		e.replicas = append(e.replicas, newReplica(r))
	}
	return e
}

// holding runs sql in a transaction on a connection of its own and keeps
// that transaction (and the locks it took) open until release is called or
// the test ends; release rolls it back once.
func (e *env) holding(sql string, args ...any) (release func()) {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err == nil {
		_, err = tx.Exec(ctx, sql, args...)
	}
	if err != nil {
		_ = conn.Close(ctx)
		e.t.Fatal(err)
	}
	done := false
	release = func() {
		if done {
			return
		}
		done = true
		if err := tx.Rollback(ctx); err != nil {
			e.t.Error(err)
		}
		_ = conn.Close(ctx)
	}
	e.t.Cleanup(release)
	return release
}

// onStore is an env without replicas on st (a database the test owns);
// addReplica starts one.
func onStore(t testing.TB, st *store.Store, dsn string) *env {
	te := testenv.OnStore(t, st, dsn, testenv.Options{Upkeep: true})
	return &env{Env: te, t: t, st: st, dsn: dsn, prefix: te.Prefix}
}

// startReplica starts one more node (the caller adds it to replicas);
// tweak (nil: none) adjusts its configuration.
func (e *env) startReplica(node string, tweak func(*broker.Config)) *replica {
	return newReplica(e.StartReplica(node, testenv.Options{Broker: tweak}))
}

func (e *env) addReplica(node string) { e.replicas = append(e.replicas, e.startReplica(node, nil)) }

// identity is an enrolled member with its keys.
type identity struct {
	mesh   meshd.Mesh
	member meshd.Member
	key    client.Identity
}

func (e *env) newMesh(name string) meshd.Mesh { return e.NewMesh(name) }

func (e *env) enroll(mesh meshd.Mesh, name string) identity {
	e.t.Helper()
	id := e.Enroll(mesh, name)
	return identity{mesh: id.Mesh, member: id.Member, key: id.Key}
}

// dial connects id to replica i with the Go client (member-key hello).
func (e *env) dial(i int, id identity, mut func(*client.Config)) *client.Client {
	e.t.Helper()
	return e.DialURL(e.replicas[i].wsURL(), testenv.Identity{Mesh: id.mesh, Member: id.member, Key: id.key}, mut)
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
	return testenv.Counter(t, r.reg, name, labels...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, d, what, cond)
}

// recvPush waits for the next non-system push on c.
func recvPush(t *testing.T, c *client.Client, d time.Duration) client.Message {
	t.Helper()
	return testenv.RecvPush(t, c, d)
}

// queryInt runs a query returning one integer against dsn.
func queryInt(t testing.TB, dsn, sql string, args ...any) int {
	t.Helper()
	return testenv.QueryInt(t, dsn, sql, args...)
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
