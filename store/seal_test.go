package store

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/internal/seal"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/wire"
)

func keyedStore(t testing.TB, url string, kr *seal.Keyring) *Store {
	t.Helper()
	s, err := New(testCtx(t), Config{URL: url, Logger: zerolog.Nop(), Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// rawSecrets returns every stored secret column value.
func rawSecrets(t *testing.T, s *Store) []string {
	t.Helper()
	var out []string
	for _, c := range sealedColumns {
		where := ""
		if c.table == "mesh.mesh" { // the reserved system mesh (migrations) has no keys
			where = " WHERE id <> 'meshd-system'"
		}
		rows, err := s.pool.Query(context.Background(), fmt.Sprintf("SELECT COALESCE(%s, '') FROM %s%s", c.col, c.table, where))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var v string
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		rows.Close()
	}
	return out
}

// Issue 12 item 7: a reader of the database learns no owner signing key,
// root key or invite token. Plaintext rows written before the key are
// sealed at first start and keep working; a value copied into another row
// does not open; `meshd keys rotate` (ResealSecrets with the new key and
// the old one as previous) moves every row to the new key id.
func TestSecretsSealedAtRest(t *testing.T) {
	t.Parallel()
	url := testpg.NewDatabase(t)
	plain := newRawStore(t, url)
	if err := plain.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, s: plain, ctx: testCtx(t)}
	legacy, legacySec, root := f.ownedMesh("legacy", "owner")
	lp, ltok := f.invite(legacy, legacySec, root, 5)

	k1, k2 := bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)
	s1 := keyedStore(t, url, seal.New(k1))
	n, unreadable, err := s1.ResealSecrets(f.ctx)
	if err != nil || n != 4 || unreadable != 0 {
		t.Fatalf("first start: sealed %d, unreadable %d, %v; want 4 plaintext values", n, unreadable, err)
	}
	// New rows are sealed when written.
	f.s = s1
	fresh, freshSec, _ := f.ownedMesh("fresh", "owner")
	fp, ftok := f.invite(fresh, freshSec, root, 1)
	plaintexts := []string{hex.EncodeToString(legacySec), hex.EncodeToString(freshSec), root, ltok, ftok, wire.InviteCanonical(lp)}
	for _, v := range rawSecrets(t, s1) {
		if !strings.HasPrefix(v, "enc1:"+seal.KeyID(k1)+":") {
			t.Fatalf("stored secret %.40q… is not sealed under key %s", v, seal.KeyID(k1))
		}
		for _, p := range plaintexts {
			if strings.Contains(v, p) {
				t.Fatal("a stored value contains a plaintext secret")
			}
		}
	}
	// Everything still works through the keyed store.
	var code string
	if err := s1.pool.QueryRow(f.ctx, "SELECT code FROM mesh.invite WHERE mesh_id = $1", legacy.ID).Scan(&code); err != nil {
		t.Fatal(err)
	}
	if tok, err := s1.InviteTokenByCode(f.ctx, code); err != nil || tok != ltok {
		t.Fatalf("invite by code: %v", err)
	}
	for _, j := range []struct {
		p   *wire.InvitePayload
		tok string
	}{{lp, ltok}, {fp, ftok}} {
		m := meshd.Member{Pubkey: key('9'), DisplayName: "joiner"}
		if _, code, err := s1.Join(f.ctx, j.p, j.tok, &m); err != nil || code != "" {
			t.Fatalf("join through a sealed invite: %q %v", code, err)
		}
	}
	if _, sec, r, err := s1.EnsureOwnerKeys(f.ctx, legacy.ID, "x", "y", "z"); err != nil || sec != hex.EncodeToString(legacySec) || r != root {
		t.Fatalf("owner keys: %v", err)
	}
	// Without the key, sealed values are refused, never returned.
	if _, err := plain.InviteTokenByCode(f.ctx, code); !errors.Is(err, seal.ErrNoKey) {
		t.Fatalf("keyless read of a sealed token: %v", err)
	}
	// A DB writer copying one mesh's sealed key into another gains nothing.
	f.exec(`UPDATE mesh.mesh SET owner_secret_key = (SELECT owner_secret_key FROM mesh.mesh WHERE id = $1) WHERE id = $2`, legacy.ID, fresh.ID)
	if _, _, _, err := s1.EnsureOwnerKeys(f.ctx, fresh.ID, "x", "y", "z"); err == nil {
		t.Fatal("a sealed owner key opened in another mesh's row")
	}
	f.exec(`UPDATE mesh.mesh SET owner_secret_key = NULL, owner_pubkey = NULL WHERE id = $1`, fresh.ID)

	// Rotation: new key current, old key previous.
	s2 := keyedStore(t, url, seal.New(k2, k1))
	n, unreadable, err = s2.ResealSecrets(f.ctx)
	if err != nil || n != 7 || unreadable != 0 {
		t.Fatalf("rotate: resealed %d, unreadable %d, %v; want 7", n, unreadable, err)
	}
	for _, v := range rawSecrets(t, s2) {
		if v != "" && !strings.HasPrefix(v, "enc1:"+seal.KeyID(k2)+":") {
			t.Fatalf("after rotation %.40q… is not under the new key", v)
		}
	}
	if tok, err := keyedStore(t, url, seal.New(k2)).InviteTokenByCode(f.ctx, code); err != nil || tok != ltok {
		t.Fatalf("new key alone after rotation: %v", err)
	}
	if _, err := s1.InviteTokenByCode(f.ctx, code); !errors.Is(err, seal.ErrNoKey) {
		t.Fatalf("old key alone after rotation: %v", err)
	}
}

// BenchmarkEnrollSealing measures what encryption at rest costs the
// enrollment writes: one CreateOwnedMesh and one CreateInvite per op, with
// secrets in plaintext and sealed (XChaCha20-Poly1305).
func BenchmarkEnrollSealing(b *testing.B) {
	for _, tc := range []struct {
		name string
		kr   *seal.Keyring
	}{{"plaintext", nil}, {"sealed", seal.New(bytes.Repeat([]byte{7}, 32))}} {
		b.Run(tc.name, func(b *testing.B) {
			url := testpg.NewDatabase(b)
			s := keyedStore(b, url, tc.kr)
			ctx := context.Background()
			if err := s.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			pub, sec, _ := ed25519.GenerateKey(nil)
			root := "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"
			exp := time.Now().Add(time.Hour).Unix()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m := meshd.Mesh{Slug: fmt.Sprintf("b-%d", i), Name: "b", OwnerUserID: "u", OwnerPubkey: hex.EncodeToString(pub)}
				owner := meshd.Member{UserID: "u", Pubkey: key('0'), DisplayName: "o", Role: "admin"}
				if ok, err := s.CreateOwnedMesh(ctx, &m, hex.EncodeToString(sec), root, &owner); err != nil || !ok {
					b.Fatal(ok, err)
				}
				p := &wire.InvitePayload{V: 1, MeshID: m.ID, MeshSlug: m.Slug, BrokerURL: "ws://x/ws", ExpiresAt: exp, MeshRootKey: root, Role: "member"}
				wire.SignInvite(p, sec)
				tok, _ := wire.EncodeInviteToken(p)
				if code, err := s.CreateInvite(ctx, p, tok, 1, "u"); err != nil || code == "" {
					b.Fatal(code, err)
				}
			}
		})
	}
}
