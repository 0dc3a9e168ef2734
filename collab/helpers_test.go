package collab_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
	"github.com/meshd/meshd/internal/seal"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/store"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// fixture: mesh "main" with alice (admin) and bob, mesh "other" with carol,
// all with real ed25519 member keys, on a fresh migrated database.
type fixture struct {
	t                 *testing.T
	ctx               context.Context
	st                *store.Store
	h                 *collab.Handler
	mesh, other       meshd.Mesh
	alice, bob, carol collab.Peer
	secrets           map[string]ed25519.PrivateKey // by member id
	url               string                        // the database
}

func newFixture(t *testing.T, cfg collab.Config) *fixture {
	t.Helper()
	return newKeyedFixture(t, cfg, nil)
}

// newKeyedFixture is newFixture on a store that seals secrets with kr (nil:
// no BROKER_ENCRYPTION_KEY).
func newKeyedFixture(t *testing.T, cfg collab.Config, kr *seal.Keyring) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	url := testpg.NewDatabase(t)
	st, err := store.New(ctx, store.Config{URL: url, Logger: zerolog.Nop(), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	f := &fixture{t: t, ctx: ctx, st: st, secrets: map[string]ed25519.PrivateKey{}, url: url}
	f.mesh = f.createMesh("c-main")
	f.other = f.createMesh("c-other")
	f.alice = f.createMember(f.mesh.ID, "alice", "admin")
	f.bob = f.createMember(f.mesh.ID, "bob", "member")
	f.carol = f.createMember(f.other.ID, "carol", "member")
	cfg.Store = st
	if f.h, err = collab.New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) createMesh(slug string) meshd.Mesh {
	f.t.Helper()
	m := meshd.Mesh{Slug: slug, Name: slug + " mesh", OwnerUserID: "u-" + slug}
	if err := f.st.CreateMesh(f.ctx, &m); err != nil {
		f.t.Fatal(err)
	}
	return m
}

func (f *fixture) createMember(meshID, name, role string) collab.Peer {
	f.t.Helper()
	pub, sec, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.t.Fatal(err)
	}
	m := meshd.Member{MeshID: meshID, Pubkey: hex.EncodeToString(pub), DisplayName: name, Role: role}
	if err := f.st.CreateMember(f.ctx, &m); err != nil {
		f.t.Fatal(err)
	}
	f.secrets[m.ID] = sec
	return collab.Peer{MeshID: meshID, MemberID: m.ID, MemberPubkey: m.Pubkey, MemberName: name,
		DisplayName: name, Admin: role == "admin", PresenceID: "pres-" + name}
}

// do sends one frame (fields as JSON without the braces' type) and returns
// the replies decoded as JSON objects.
func (f *fixture) do(p collab.Peer, typ, fields string) []map[string]any {
	f.t.Helper()
	raw := `{"type":"` + typ + `"`
	if fields != "" {
		raw += "," + fields
	}
	raw += "}"
	replies, ok := f.h.Handle(f.ctx, p, typ, []byte(raw))
	if !ok {
		f.t.Fatalf("%s: Handle does not own it", typ)
	}
	if len(replies) == 0 {
		f.t.Fatalf("%s: no reply", typ)
	}
	out := make([]map[string]any, len(replies))
	for i, r := range replies {
		b, err := json.Marshal(r)
		if err != nil {
			f.t.Fatalf("%s: marshal reply: %v", typ, err)
		}
		if err := json.Unmarshal(b, &out[i]); err != nil {
			f.t.Fatal(err)
		}
	}
	return out
}

// one is do for verbs that answer exactly one frame; it fails on a rejection
// unless code is expected ("" = success).
func (f *fixture) one(p collab.Peer, typ, fields, wantType, wantCode string) map[string]any {
	f.t.Helper()
	rs := f.do(p, typ, fields)
	if len(rs) != 1 {
		f.t.Fatalf("%s: %d replies, want 1: %v", typ, len(rs), rs)
	}
	r := rs[0]
	if r["type"] != wantType {
		f.t.Fatalf("%s: reply type %v, want %s: %v", typ, r["type"], wantType, r)
	}
	code, _ := r["code"].(string)
	if code != wantCode {
		f.t.Fatalf("%s %s: code %q, want %q: %v", typ, fields, code, wantCode, r)
	}
	return r
}

func list(r map[string]any, key string) []any {
	v, _ := r[key].([]any)
	return v
}

func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// sharePrefix rewrites the ids of the given rows of mesh.<table> to start
// with prefix (ids are random, so a shared prefix never happens by
// itself), and returns the new ids in order.
func (f *fixture) sharePrefix(table, prefix string, ids ...string) []string {
	f.t.Helper()
	conn, err := pgx.Connect(f.ctx, f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(f.ctx)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = prefix + id[len(prefix):]
		if _, err := conn.Exec(f.ctx, `UPDATE mesh.`+pgx.Identifier{table}.Sanitize()+` SET id = $2 WHERE id = $1`, id, out[i]); err != nil {
			f.t.Fatal(err)
		}
	}
	return out
}
