package api_test

// The api tests run the control plane as cmd/meshd does: on one mux with a
// real broker (sockets are how hooks and joins are observed), real
// PostgreSQL (internal/testpg) and an embedded NATS server
// (internal/testenv).

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/testenv"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/store"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// replica is one broker.Server and one api.Server on one mux behind an
// httptest server (internal/testenv; the short names are the tests').
type replica struct {
	srv *broker.Server
	reg *prometheus.Registry
	hs  *httptest.Server
	ctl *api.Server
}

func (r *replica) wsURL() string { return "ws" + strings.TrimPrefix(r.hs.URL, "http") + "/ws" }

// newEnv starts n replicas; tweak (nil: none) adjusts each one's broker
// and control-plane configurations.
func newEnv(t testing.TB, n int, tweak func(*broker.Config, *api.Config)) *env {
	t.Helper()
	opts := split(tweak)
	opts.WithAPI = true
	te := testenv.New(t, n, opts)
	e := &env{Env: te, t: t, st: te.St, dsn: te.DSN, prefix: te.Prefix}
	for _, r := range te.Replicas {
		e.replicas = append(e.replicas, newReplica(r))
	}
	return e
}

func newReplica(r *testenv.Replica) *replica {
	return &replica{srv: r.Srv, reg: r.Reg, hs: r.HS, ctl: r.Ctl}
}

// startReplica starts one more node (the caller adds it to replicas);
// tweak (nil: none) adjusts its configurations.
func (e *env) startReplica(node string, tweak func(*broker.Config, *api.Config)) *replica {
	return newReplica(e.StartReplica(node, split(tweak)))
}

// split is a tweak of both configurations as testenv's two.
func split(tweak func(*broker.Config, *api.Config)) testenv.Options {
	if tweak == nil {
		return testenv.Options{}
	}
	return testenv.Options{
		Broker: func(c *broker.Config) { tweak(c, &api.Config{}) },
		API:    func(c *api.Config) { tweak(&broker.Config{}, c) },
	}
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

func counter(t *testing.T, r *replica, name string, labels ...string) float64 {
	t.Helper()
	return testenv.Counter(t, r.reg, name, labels...)
}

// recvPush waits for the next non-system push on c.
func recvPush(t *testing.T, c *client.Client, d time.Duration) client.Message {
	t.Helper()
	return testenv.RecvPush(t, c, d)
}
