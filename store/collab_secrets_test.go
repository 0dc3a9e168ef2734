package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
	"github.com/meshd/meshd/internal/seal"
	"github.com/meshd/meshd/internal/testpg"
)

// Vault values and webhook secrets are sealed under the current key, bound
// to their row (a value copied into another row does not open), moved to a
// new key by `meshd keys rotate` (ResealSecrets), and make a keyless
// replica refuse to start (SealedSecretsExist).
func TestVaultAndWebhookSecretsRotate(t *testing.T) {
	t.Parallel()
	url := testpg.NewDatabase(t)
	k1, k2 := bytes.Repeat([]byte{0x31}, 32), bytes.Repeat([]byte{0x32}, 32)
	s1 := keyedStore(t, url, seal.New(k1))
	if err := s1.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, s: s1, ctx: testCtx(t)}
	f.mesh = f.createMesh("v-main")
	f.alice = f.createMember(f.mesh.ID, key('a'), "alice", "admin")
	f.bob = f.createMember(f.mesh.ID, key('b'), "bob", "member")
	if ok, err := s1.SealedSecretsExist(f.ctx); err != nil || ok {
		t.Fatalf("sealed secrets before any: %v %v", ok, err)
	}
	entry := func(c string) collab.VaultEntry {
		return collab.VaultEntry{Key: "K", Ciphertext: c, Nonce: "bm9uY2U=", SealedKey: "c2VhbGVk", EntryType: "env"}
	}
	for _, m := range []meshd.Member{f.alice, f.bob} {
		if err := s1.VaultSet(f.ctx, f.mesh.ID, m.ID, entry("Y2lwaGVy"+m.DisplayName), 10); err != nil {
			t.Fatal(err)
		}
	}
	hook := collab.Webhook{Name: "ci", Secret: strings.Repeat("ab", 32), CreatedBy: f.bob.ID}
	if err := s1.CreateWebhook(f.ctx, f.mesh.ID, &hook, 10); err != nil {
		t.Fatal(err)
	}
	if ok, err := s1.SealedSecretsExist(f.ctx); err != nil || !ok {
		t.Fatalf("sealed secrets after a vault entry: %v %v", ok, err)
	}

	s2 := keyedStore(t, url, seal.New(k2, k1))
	if n, unreadable, err := s2.ResealSecrets(f.ctx); err != nil || n != 3 || unreadable != 0 {
		t.Fatalf("rotate: resealed %d, unreadable %d, %v; want 3", n, unreadable, err)
	}
	only2 := keyedStore(t, url, seal.New(k2))
	var raw []string
	for _, q := range []string{`SELECT value FROM mesh.vault_entry`, `SELECT secret FROM mesh.webhook`} {
		rows, err := only2.pool.Query(f.ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var v string
			_ = rows.Scan(&v)
			raw = append(raw, v)
		}
		rows.Close()
	}
	for _, v := range raw {
		if !strings.HasPrefix(v, "enc1:"+seal.KeyID(k2)+":") || strings.Contains(v, hook.Secret) {
			t.Fatalf("after rotation %.40q… is not sealed under the new key", v)
		}
	}
	es, err := only2.VaultGet(f.ctx, f.mesh.ID, f.alice.ID, []string{"K"})
	if err != nil || len(es) != 1 || es[0].Ciphertext != "Y2lwaGVyalice" {
		t.Fatalf("vault get with the new key: %v %v", es, err)
	}
	hs, err := only2.ListWebhooks(f.ctx, f.mesh.ID)
	if err != nil || len(hs) != 1 || hs[0].Secret != hook.Secret {
		t.Fatalf("webhooks with the new key: %v %v", hs, err)
	}
	if w, err := only2.WebhookBySecret(f.ctx, f.mesh.ID, hook.Secret); err != nil || w.Name != "ci" {
		t.Fatalf("webhook by secret: %v %v", w, err)
	}
	if _, err := s1.VaultGet(f.ctx, f.mesh.ID, f.alice.ID, []string{"K"}); !errors.Is(err, seal.ErrNoKey) {
		t.Fatalf("old key alone after rotation: %v", err)
	}

	// A DB writer copying alice's sealed value into bob's row gains nothing.
	f.exec(`UPDATE mesh.vault_entry SET value = (SELECT value FROM mesh.vault_entry WHERE member_id = $1) WHERE member_id = $2`,
		f.alice.ID, f.bob.ID)
	if es, err := only2.VaultGet(f.ctx, f.mesh.ID, f.bob.ID, []string{"K"}); err == nil {
		t.Fatalf("alice's sealed value opened in bob's row: %v", es)
	}
}
