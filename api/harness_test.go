package api_test

// The api tests run the control plane as cmd/meshd does: on one mux with a
// real broker (sockets are how hooks and joins are observed), real
// PostgreSQL (internal/testpg) and an embedded NATS server.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/audit"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/fanout"
	"github.com/meshd/meshd/internal/httpx"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/store"
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

// replica is one broker.Server and one api.Server on one mux behind an
// httptest server.
type replica struct {
	srv *broker.Server
	reg *prometheus.Registry
	hs  *httptest.Server
	ctl *api.Server
}

func (r *replica) wsURL() string { return "ws" + strings.TrimPrefix(r.hs.URL, "http") + "/ws" }

func newEnv(t testing.TB, n int, tweak func(*broker.Config, *api.Config)) *env {
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

// env is a database plus one or more replicas sharing it and one NATS
// prefix: a cluster in one process.
type env struct {
	t        testing.TB
	st       *store.Store
	dsn      string
	prefix   string
	replicas []*replica
}

func (e *env) startReplica(node string, tweak func(*broker.Config, *api.Config)) *replica {
	t := e.t
	reg := prometheus.NewRegistry()
	bus, err := fanout.New(context.Background(), fanout.Config{URL: natsURL(t), Prefix: e.prefix, Registerer: reg, Linger: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("node", node).Logger()
	bcfg := broker.Config{NodeID: node, Store: e.st, Fanout: bus, NATS: bus, Registry: reg, Logger: log,
		Audit:           runAudit(t, e.st, reg, log),
		RedrainInterval: 200 * time.Millisecond, SweepInterval: 200 * time.Millisecond}
	acfg := api.Config{Store: e.st, Fanout: bus, Registry: reg, Logger: log}
	if tweak != nil {
		tweak(&bcfg, &acfg)
	}
	srv, err := broker.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctl, err := api.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start(context.Background())
	mux := http.NewServeMux()
	srv.Register(mux)
	ctl.Register(mux)
	hs := httptest.NewServer(httpx.Handler(acfg.Logger, mux))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
		_ = bus.Close()
	})
	return &replica{srv: srv, reg: reg, hs: hs, ctl: ctl}
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
