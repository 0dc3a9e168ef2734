package store

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// ownedMesh creates a mesh with owner keys through CreateOwnedMesh.
func (f *fixture) ownedMesh(slug, user string) (meshd.Mesh, ed25519.PrivateKey, string) {
	f.t.Helper()
	pub, sec, _ := ed25519.GenerateKey(nil)
	m := meshd.Mesh{Slug: slug, Name: slug, OwnerUserID: user, OwnerPubkey: hex.EncodeToString(pub)}
	owner := meshd.Member{UserID: user, Pubkey: key('0'), DisplayName: slug + "-owner", Role: "admin"}
	root := "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"
	ok, err := f.s.CreateOwnedMesh(f.ctx, &m, hex.EncodeToString(sec), root, &owner)
	if err != nil || !ok {
		f.t.Fatalf("create owned mesh: %v %v", ok, err)
	}
	return m, sec, root
}

// invite signs and stores an invite of mesh m.
func (f *fixture) invite(m meshd.Mesh, owner ed25519.PrivateKey, root string, uses int) (*wire.InvitePayload, string) {
	f.t.Helper()
	p := &wire.InvitePayload{V: 1, MeshID: m.ID, MeshSlug: m.Slug, BrokerURL: "ws://x/ws",
		ExpiresAt: time.Now().Add(time.Hour).Unix() + int64(f.socketSeq.Add(1)), MeshRootKey: root, Role: "member"}
	wire.SignInvite(p, owner)
	tok, _ := wire.EncodeInviteToken(p)
	code, err := f.s.CreateInvite(f.ctx, p, tok, uses, "owner")
	if err != nil || code == "" {
		f.t.Fatalf("create invite: %q %v", code, err)
	}
	return p, tok
}

func TestCreateOwnedMeshSlugs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	a, _, _ := f.ownedMesh("team", "u1")
	b, _, _ := f.ownedMesh("team", "u1")
	if a.Slug != "team" || b.Slug != "team-2" {
		t.Fatalf("slugs %q %q", a.Slug, b.Slug)
	}
	f.exec(`INSERT INTO mesh.mesh (id, slug) SELECT 'x' || i, 'team-' || i FROM generate_series(3, 100) i`)
	before := f.exec("SELECT 1 FROM mesh.mesh") + f.exec("SELECT 1 FROM mesh.member")
	m := meshd.Mesh{Slug: "team", Name: "team"}
	owner := meshd.Member{Pubkey: key('9'), Role: "admin"}
	ok, err := f.s.CreateOwnedMesh(f.ctx, &m, "s", "r", &owner)
	if err != nil || ok || m.Slug != "team" {
		t.Fatalf("all taken: ok %v err %v slug %q", ok, err, m.Slug)
	}
	if after := f.exec("SELECT 1 FROM mesh.mesh") + f.exec("SELECT 1 FROM mesh.member"); after != before {
		t.Fatal("a failed create wrote rows")
	}
	if err := f.s.ArchiveMesh(f.ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.s.ArchiveMesh(f.ctx, b.ID); !errors.Is(err, meshd.ErrNotFound) {
		t.Fatalf("archive twice: %v", err)
	}
	if c, _, _ := f.ownedMesh("team", "u1"); c.Slug != "team-2" {
		t.Fatalf("archived slug not reused: %q", c.Slug)
	}
	if _, err := f.s.MeshBySlug(f.ctx, "nope"); !errors.Is(err, meshd.ErrNotFound) {
		t.Fatalf("MeshBySlug: %v", err)
	}
}

// EnsureOwnerKeys fills what is missing and keeps what exists.
func TestEnsureOwnerKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pub, sec, root, err := f.s.EnsureOwnerKeys(f.ctx, f.mesh.ID, key('1'), "s1", "r1")
	if err != nil || pub != key('1') || sec != "s1" || root != "r1" {
		t.Fatalf("fill: %s %s %s %v", pub, sec, root, err)
	}
	pub, sec, root, err = f.s.EnsureOwnerKeys(f.ctx, f.mesh.ID, key('2'), "s2", "r2")
	if err != nil || pub != key('1') || sec != "s1" || root != "r1" {
		t.Fatalf("keep: %s %s %s %v", pub, sec, root, err)
	}
	if _, _, _, err := f.s.EnsureOwnerKeys(f.ctx, "nope", key('1'), "s", "r"); !errors.Is(err, meshd.ErrNotFound) {
		t.Fatalf("unknown mesh: %v", err)
	}
}

// Same token twice reports "" (re-sign), codes resolve to tokens.
func TestCreateInviteAndCode(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m, owner, root := f.ownedMesh("inv", "u1")
	p, tok := f.invite(m, owner, root, 1)
	if code, err := f.s.CreateInvite(f.ctx, p, tok, 1, "owner"); err != nil || code != "" {
		t.Fatalf("duplicate token: %q %v", code, err)
	}
	var code string
	if err := f.s.pool.QueryRow(f.ctx, "SELECT code FROM mesh.invite WHERE token = $1", tok).Scan(&code); err != nil {
		t.Fatal(err)
	}
	if got, err := f.s.InviteTokenByCode(f.ctx, code); err != nil || got != tok {
		t.Fatalf("by code: %v", err)
	}
	if _, err := f.s.InviteTokenByCode(f.ctx, "NOPE"); !errors.Is(err, meshd.ErrNotFound) {
		t.Fatalf("unknown code: %v", err)
	}
}

// One pubkey joining concurrently through two different invites: one
// member, both joins succeed, exactly one use consumed in total.
func TestJoinConcurrentSamePubkey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m, owner, root := f.ownedMesh("race", "u1")
	p1, t1 := f.invite(m, owner, root, 1)
	p2, t2 := f.invite(m, owner, root, 1)
	for round := 0; round < 10; round++ {
		pub := hex.EncodeToString([]byte{byte(round)}) + key('f')[2:]
		var wg sync.WaitGroup
		ids := make([]string, 2)
		codes := make([]string, 2)
		for i, inv := range []struct {
			p   *wire.InvitePayload
			tok string
		}{{p1, t1}, {p2, t2}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mb := meshd.Member{Pubkey: pub, DisplayName: "racer"}
				_, code, err := f.s.Join(f.ctx, inv.p, inv.tok, &mb)
				if err != nil {
					t.Error(err)
				}
				ids[i], codes[i] = mb.ID, code
			}()
		}
		wg.Wait()
		var used int
		_ = f.s.pool.QueryRow(f.ctx, "SELECT sum(used_count) FROM mesh.invite WHERE mesh_id = $1", m.ID).Scan(&used)
		if codes[0] != "" || codes[1] != "" || ids[0] != ids[1] || ids[0] == "" || used != 1 {
			t.Fatalf("round %d: codes %q ids %q used %d", round, codes, ids, used)
		}
		f.exec("UPDATE mesh.invite SET used_count = 0 WHERE mesh_id = $1", m.ID)
	}
}

// Join's checks, each with nothing consumed.
func TestJoinCodes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m, owner, root := f.ownedMesh("codes", "u1")
	p, tok := f.invite(m, owner, root, 1)
	join := func(p *wire.InvitePayload, tok, pub string) (bool, string) {
		t.Helper()
		mb := meshd.Member{Pubkey: pub, DisplayName: "x"}
		already, code, err := f.s.Join(f.ctx, p, tok, &mb)
		if err != nil {
			t.Fatal(err)
		}
		return already, code
	}
	bad := *p
	bad.Role = "superuser"
	wire.SignInvite(&bad, owner)
	for _, tt := range []struct {
		name string
		p    *wire.InvitePayload
		tok  string
		want string
	}{
		{"mesh_not_found", &wire.InvitePayload{MeshID: "nope"}, tok, JoinMeshNotFound},
		{"mesh_missing_owner_key", &wire.InvitePayload{MeshID: f.mesh.ID}, tok, JoinMissingOwnerKey},
		{"owner_mismatch", &wire.InvitePayload{MeshID: m.ID, OwnerPubkey: key('e')}, tok, JoinOwnerMismatch},
		{"not_found", p, "nope", JoinInviteNotFound},
		{"payload_mismatch", &bad, tok, JoinPayloadMismatch},
	} {
		if _, code := join(tt.p, tt.tok, key('d')); code != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, code, tt.want)
		}
	}
	if already, code := join(p, tok, key('d')); already || code != "" {
		t.Fatalf("join: %v %q", already, code)
	}
	if already, code := join(p, tok, key('d')); !already || code != "" {
		t.Fatalf("repeat join: %v %q", already, code)
	}
	if _, code := join(p, tok, key('c')); code != JoinInviteExhausted {
		t.Fatalf("exhausted: %q", code)
	}
}

// MergeGrants: arrays replace, empty arrays stay (block), nil deletes.
func TestMergeGrants(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m, _, _ := f.ownedMesh("grants", "u1")
	g, err := f.s.MergeGrants(f.ctx, m.ID, "u1", meshd.Grants{key('a'): {"dm"}, key('b'): {}})
	if err != nil || len(g) != 2 || len(g[key('a')]) != 1 || g[key('b')] == nil || len(g[key('b')]) != 0 {
		t.Fatalf("merge: %v %v", g, err)
	}
	g, err = f.s.MergeGrants(f.ctx, m.ID, "u1", meshd.Grants{key('a'): nil, key('c'): {"broadcast"}})
	if err != nil || len(g) != 2 || g[key('a')] != nil || g[key('c')][0] != "broadcast" {
		t.Fatalf("delete: %v %v", g, err)
	}
	if _, err := f.s.MergeGrants(f.ctx, m.ID, "stranger", meshd.Grants{}); !errors.Is(err, meshd.ErrNotFound) {
		t.Fatalf("stranger: %v", err)
	}
}

// UserMeshes: owned meshes and memberships, counts.
func TestUserMeshes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	m, _, _ := f.ownedMesh("mine", "u1")
	f.createMember(m.ID, key('b'), "bob", "member")
	f.ownedMesh("theirs", "u2")
	type row struct {
		slug, role      string
		members, active int
	}
	var got []row
	err := f.s.UserMeshes(f.ctx, "u1", func(ms meshd.Mesh, role string, _ time.Time, members, active int) {
		got = append(got, row{ms.Slug, role, members, active})
	})
	if err != nil || len(got) != 1 || got[0] != (row{"mine", "admin", 2, 0}) {
		t.Fatalf("%v %v", got, err)
	}
}
