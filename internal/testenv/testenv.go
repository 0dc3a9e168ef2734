// Package testenv runs a meshd cluster inside one test process, as
// cmd/meshd wires it: a real PostgreSQL database of the test's own
// (internal/testpg; MESHD_TEST_DATABASE_URL or a private cluster), an
// embedded NATS server shared by the package's tests (each Env isolates
// itself with its own subject prefix), and one or more replicas, each a
// broker.Server (with, optionally, the api.Server on the same mux) behind
// an httptest server, its audit writer and its leader jobs.
//
// The test package's TestMain must call testpg.Main.
package testenv

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
	"github.com/meshd/meshd/jobs"
	"github.com/meshd/meshd/store"
)

var (
	natsOnce sync.Once
	natsSrv  *fanout.EmbeddedServer
	natsErr  error
)

// NATSURL returns a real NATS server shared by the package's tests.
func NATSURL(t testing.TB) string {
	natsOnce.Do(func() { natsSrv, natsErr = fanout.StartEmbedded(fanout.EmbeddedConfig{Port: -1}) })
	if natsErr != nil {
		t.Fatalf("embedded nats: %v", natsErr)
	}
	return natsSrv.ClientURL()
}

// Options shape the replicas of an Env.
type Options struct {
	// Broker and API adjust each replica's configuration (either may be
	// nil). API is used only with WithAPI.
	Broker func(*broker.Config)
	API    func(*api.Config)
	// WithAPI mounts the control plane on each replica's mux, behind
	// httpx.Handler (request ids, access log), as cmd/meshd serves it.
	WithAPI bool
	// Upkeep runs the upkeep job on the first replica started, as under a
	// leader: cross-replica tests then see peer_left and lease evictions
	// cross over.
	Upkeep bool
}

// Replica is one node of an Env.
type Replica struct {
	Srv  *broker.Server
	Ctl  *api.Server // nil without Options.WithAPI
	Jobs *jobs.Jobs  // the node's leader jobs; tests run them (RunJob) or call one pass
	Reg  *prometheus.Registry
	HS   *httptest.Server
	Bus  *fanout.Bus
}

// WSURL is the replica's WebSocket endpoint.
func (r *Replica) WSURL() string { return "ws" + strings.TrimPrefix(r.HS.URL, "http") + "/ws" }

// Env is a database plus replicas sharing it and one NATS prefix: a
// cluster in one process.
type Env struct {
	T        testing.TB
	St       *store.Store
	DSN      string
	Prefix   string
	Replicas []*Replica
	opts     Options
	started  int // replicas started; the first runs the upkeep
}

// New starts a migrated database and n replicas; everything stops when t
// ends.
func New(t testing.TB, n int, opts Options) *Env {
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
	e := OnStore(t, st, dsn, opts)
	for i := 0; i < n; i++ {
		e.Replicas = append(e.Replicas, e.StartReplica(fmt.Sprintf("node-%d", i), Options{}))
	}
	return e
}

// OnStore is an Env without replicas on a database the test set up itself
// (one it stops and restarts, say); add replicas with StartReplica.
func OnStore(t testing.TB, st *store.Store, dsn string, opts Options) *Env {
	return &Env{T: t, St: st, DSN: dsn, Prefix: "t" + meshd.NewID()[20:], opts: opts}
}

// StartReplica starts one more node named node (not added to Replicas);
// the Broker and API funcs of extra (either may be nil) adjust its
// configuration after the Env's own.
func (e *Env) StartReplica(node string, extra Options) *Replica {
	t := e.T
	t.Helper()
	reg := prometheus.NewRegistry()
	bus, err := fanout.New(context.Background(), fanout.Config{URL: NATSURL(t), Prefix: e.Prefix, Registerer: reg, Linger: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("node", node).Logger()
	aw := RunAudit(t, e.St, reg, log)
	bcfg := broker.Config{
		NodeID: node, Store: e.St, CollabStore: e.St, Fanout: bus, NATS: bus, Registry: reg, Logger: log,
		Audit: aw, RedrainInterval: 200 * time.Millisecond, SweepInterval: 200 * time.Millisecond,
	}
	for _, f := range []func(*broker.Config){e.opts.Broker, extra.Broker} {
		if f != nil {
			f(&bcfg)
		}
	}
	srv, err := broker.New(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	lj, err := jobs.New(jobs.Config{Store: e.St, Fanout: bus, Audit: aw, Router: srv, Registry: reg, Logger: log,
		SweepInterval: bcfg.SweepInterval, Grace: bcfg.Grace, HookFreshWindow: bcfg.HookFreshWindow})
	if err != nil {
		t.Fatal(err)
	}
	r := &Replica{Srv: srv, Jobs: lj, Reg: reg, Bus: bus}
	handler := srv.Handler()
	if e.opts.WithAPI {
		acfg := api.Config{Store: e.St, Fanout: bus, Registry: reg, Logger: log}
		for _, f := range []func(*api.Config){e.opts.API, extra.API} {
			if f != nil {
				f(&acfg)
			}
		}
		if r.Ctl, err = api.New(acfg); err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		srv.Register(mux)
		r.Ctl.Register(mux)
		handler = httpx.Handler(acfg.Logger, mux)
	}
	srv.Start(context.Background())
	r.HS = httptest.NewServer(handler)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		r.HS.Close()
		_ = bus.Close()
	})
	if e.started++; e.opts.Upkeep && e.started == 1 {
		RunJob(t, lj.Upkeep) // stops before the replica does
	}
	return r
}

// Identity is an enrolled member with its keys.
type Identity struct {
	Mesh   meshd.Mesh
	Member meshd.Member
	Key    client.Identity
}

// NewMesh creates a mesh with a unique slug.
func (e *Env) NewMesh(name string) meshd.Mesh {
	e.T.Helper()
	m := meshd.Mesh{Name: name, Slug: strings.ToLower(name) + "-" + meshd.NewID()[24:], OwnerUserID: "owner-user"}
	if err := e.St.CreateMesh(context.Background(), &m); err != nil {
		e.T.Fatal(err)
	}
	return m
}

// Enroll adds a member named name with fresh keys to mesh.
func (e *Env) Enroll(mesh meshd.Mesh, name string) Identity {
	e.T.Helper()
	key := client.GenerateIdentity()
	m := meshd.Member{MeshID: mesh.ID, UserID: "user-" + name, Pubkey: key.Pubkey, DisplayName: name, Role: "member"}
	if err := e.St.CreateMember(context.Background(), &m); err != nil {
		e.T.Fatal(err)
	}
	return Identity{Mesh: mesh, Member: m, Key: key}
}

// Dial connects id to replica i with the Go client (member-key hello);
// mut adjusts the client's configuration. The client closes when t ends.
func (e *Env) Dial(i int, id Identity, mut func(*client.Config)) *client.Client {
	e.T.Helper()
	return e.DialURL(e.Replicas[i].WSURL(), id, mut)
}

// DialURL is Dial to the WebSocket endpoint url.
func (e *Env) DialURL(url string, id Identity, mut func(*client.Config)) *client.Client {
	e.T.Helper()
	cfg := client.Config{URL: url, MeshID: id.Mesh.ID, MemberID: id.Member.ID, Member: id.Key,
		DisplayName: id.Member.DisplayName, CWD: "/work/" + id.Member.DisplayName, PID: 4242}
	if mut != nil {
		mut(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		e.T.Fatalf("dial %s: %v", id.Member.DisplayName, err)
	}
	e.T.Cleanup(func() { _ = c.Close() })
	return c
}

// RunAudit starts an audit writer on st; it stops after the cleanups
// registered later (the broker's Shutdown) have run.
func RunAudit(t testing.TB, st *store.Store, reg prometheus.Registerer, log zerolog.Logger) *audit.Writer {
	t.Helper()
	aw, err := audit.New(audit.Config{Store: st, Registry: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	RunJob(t, aw.Run)
	return aw
}

// RunJob runs job until t ends and waits for it to return (after the
// cleanups registered later); an error it returns fails t.
func RunJob(t testing.TB, job func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- job(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("job: %v", err)
		}
	})
}
