package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// newStore returns a migrated Store on a fresh database.
func newStore(t testing.TB) *Store {
	t.Helper()
	s := newRawStore(t, testpg.NewDatabase(t))
	if err := s.Migrate(testCtx(t)); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

func newRawStore(t testing.TB, url string) *Store {
	t.Helper()
	s, err := New(testCtx(t), Config{URL: url, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// key returns a 64-char pubkey made of c.
func key(c byte) string { return strings.Repeat(string(c), 64) }

// fixture is one mesh with members alice (admin) and bob, plus a second mesh
// with member carol, mirroring upstream's test helpers (B.17).
type fixture struct {
	t           testing.TB
	s           *Store
	ctx         context.Context
	mesh, other meshd.Mesh
	alice, bob  meshd.Member
	carol       meshd.Member
	socketSeq   atomic.Int64
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{t: t, s: newStore(t), ctx: testCtx(t)}
	f.mesh = f.createMesh("t-main")
	f.other = f.createMesh("t-other")
	f.alice = f.createMember(f.mesh.ID, key('a'), "alice", "admin")
	f.bob = f.createMember(f.mesh.ID, key('b'), "bob", "member")
	f.carol = f.createMember(f.other.ID, key('c'), "carol", "member")
	return f
}

func (f *fixture) createMesh(slug string) meshd.Mesh {
	f.t.Helper()
	m := meshd.Mesh{Slug: slug, Name: slug + " mesh", OwnerUserID: "test-user-integration"}
	if err := f.s.CreateMesh(f.ctx, &m); err != nil {
		f.t.Fatal(err)
	}
	return m
}

func (f *fixture) createMember(meshID, pubkey, name, role string) meshd.Member {
	f.t.Helper()
	m := meshd.Member{MeshID: meshID, Pubkey: pubkey, DisplayName: name, Role: role}
	if err := f.s.CreateMember(f.ctx, &m); err != nil {
		f.t.Fatal(err)
	}
	return m
}

func (f *fixture) exec(sql string, args ...any) int64 {
	f.t.Helper()
	tag, err := f.s.pool.Exec(f.ctx, sql, args...)
	if err != nil {
		f.t.Fatalf("exec %q: %v", sql, err)
	}
	return tag.RowsAffected()
}

// attachReq builds a hello-style request for member m with session id sid.
func (f *fixture) attachReq(m meshd.Member, sid, sessionPubkey string) meshd.AttachRequest {
	n := f.socketSeq.Add(1)
	return meshd.AttachRequest{
		Presence: meshd.Presence{
			MeshID: m.MeshID, MemberID: m.ID, MemberPubkey: m.Pubkey, SessionID: sid,
			SessionPubkey: sessionPubkey, PID: 1000 + int(n), CWD: "/work/" + sid,
			Groups: []meshd.Group{{Name: "dev"}}, Role: meshd.RoleSession,
			NodeID: "node-1", SocketID: fmt.Sprintf("sock-%d", n),
		},
		MaxPerMesh: 100,
	}
}

func (f *fixture) attach(req meshd.AttachRequest) meshd.AttachResult {
	f.t.Helper()
	res, err := f.s.Attach(f.ctx, req)
	if err != nil {
		f.t.Fatalf("attach: %v", err)
	}
	return res
}

// enqueue queues an undelivered message from sender to target.
func (f *fixture) enqueue(sender meshd.Member, target string, prio meshd.Priority) meshd.QueuedMessage {
	f.t.Helper()
	m := meshd.QueuedMessage{MeshID: sender.MeshID, SenderMemberID: sender.ID, TargetSpec: target,
		Priority: prio, Nonce: "bm9uY2U=", Ciphertext: "Y2lwaGVy"}
	if err := f.s.Enqueue(f.ctx, &m, false); err != nil {
		f.t.Fatalf("enqueue: %v", err)
	}
	return m
}

func (f *fixture) presence(id string) meshd.Presence {
	f.t.Helper()
	peers, err := f.s.pool.Query(f.ctx, `SELECT `+presenceCols+`
FROM mesh.presence p JOIN mesh.member m ON m.id = p.member_id WHERE p.id = $1`, id)
	if err != nil {
		f.t.Fatal(err)
	}
	ps, err := scanPresences(peers)
	if err != nil || len(ps) != 1 {
		f.t.Fatalf("presence %s: %v (%d rows)", id, err, len(ps))
	}
	return ps[0]
}

func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"missing_url", Config{}},
		{"negative_max_conns", Config{URL: "postgres://localhost/x", MaxConns: -1}},
		{"unparseable_url", Config{URL: "postgres://%zz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := New(context.Background(), tt.cfg); err == nil {
				s.Close()
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestNewSessionIsUTC(t *testing.T) {
	t.Parallel()
	s := newRawStore(t, testpg.NewDatabase(t))
	ctx := testCtx(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	var tz string
	if err := s.pool.QueryRow(ctx, "SHOW timezone").Scan(&tz); err != nil || tz != "UTC" {
		t.Fatalf("timezone = %q, %v", tz, err)
	}
	if got := s.pool.Config().MaxConns; got != DefaultMaxConns {
		t.Fatalf("MaxConns = %d, want %d", got, DefaultMaxConns)
	}
}

// Ping does not queue behind a busy pool: with every pool connection taken
// (a reattach storm), readiness still measures PostgreSQL itself (issue 11:
// the survivor of a kill -9 reported db_down under load it was serving).
func TestPingWithPoolExhausted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var held []*pgxpool.Conn
	defer func() {
		for _, c := range held {
			c.Release()
		}
	}()
	for range f.s.pool.Config().MaxConns {
		c, err := f.s.pool.Acquire(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 2*time.Second)
	defer cancel()
	if err := f.s.Ping(ctx); err != nil {
		t.Fatalf("ping with the pool exhausted: %v", err)
	}
}
