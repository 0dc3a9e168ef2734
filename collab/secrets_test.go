package collab_test

import (
	"crypto/rand"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd/collab"
	"github.com/meshd/meshd/internal/seal"
)

func testKeyring(t *testing.T) *seal.Keyring {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return seal.New(k)
}

// column returns every value of one column of a table, read straight from
// the database.
func (f *fixture) column(query string) []string {
	f.t.Helper()
	conn, err := pgx.Connect(f.ctx, f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(f.ctx)
	rows, err := conn.Query(f.ctx, query)
	if err != nil {
		f.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

const (
	vaultCipher = "c2VjcmV0LWNpcGhlcnRleHQtb2YtdGhlLWRlcGxveS1rZXk="
	vaultNonce  = "bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2U="
	vaultSealed = "c2VhbGVkLWtleS1mb3ItYWxpY2U="
)

func vaultSetFields(key, cipher string) string {
	return `"key":` + jsonStr(key) + `,"ciphertext":` + jsonStr(cipher) +
		`,"nonce":"` + vaultNonce + `","sealed_key":"` + vaultSealed + `","entry_type":"env","description":"deploy key"`
}

// TestVault: entries are per member (another member of the mesh, or a member
// of another mesh, never sees, gets or deletes them), the client's
// ciphertext, nonce and sealed key are sealed again at rest, replies are
// E.10's snake_case frames with _reqId, and hostile fields are rejected.
func TestVault(t *testing.T) {
	f := newKeyedFixture(t, collab.Config{}, testKeyring(t))
	r := f.one(f.alice, "vault_set", `"_reqId":"vset_1",`+vaultSetFields("DEPLOY_KEY", vaultCipher), "vault_ack", "")
	if r["key"] != "DEPLOY_KEY" || r["action"] != "stored" || r["_reqId"] != "vset_1" {
		t.Fatalf("vault_set: %v", r)
	}
	// An upsert replaces every field.
	f.one(f.alice, "vault_set", vaultSetFields("DEPLOY_KEY", vaultCipher+"AA"), "vault_ack", "")
	f.one(f.alice, "vault_set", `"key":"TLS","ciphertext":"YQ==","nonce":"bg==","sealed_key":"aw==","entry_type":"file","mount_path":"/etc/tls.pem"`, "vault_ack", "")

	// At rest: never the client's strings.
	vals := f.column(`SELECT value FROM mesh.vault_entry`)
	if len(vals) != 2 {
		t.Fatalf("%d rows, want 2", len(vals))
	}
	for _, v := range vals {
		if !strings.HasPrefix(v, "enc1:") || strings.Contains(v, vaultCipher) || strings.Contains(v, vaultSealed) || strings.Contains(v, vaultNonce) {
			t.Fatalf("vault value stored in clear: %q", v)
		}
	}

	r = f.one(f.alice, "vault_list", `"_reqId":"vlist_1"`, "vault_list_result", "")
	es := list(r, "entries")
	if len(es) != 2 || r["_reqId"] != "vlist_1" {
		t.Fatalf("vault_list: %v", r)
	}
	e0 := es[0].(map[string]any)
	if e0["key"] != "DEPLOY_KEY" || e0["entry_type"] != "env" || e0["description"] != "deploy key" || e0["updated_at"] == nil || e0["ciphertext"] != nil {
		t.Fatalf("vault_list entry: %v", e0)
	}
	if e1 := es[1].(map[string]any); e1["key"] != "TLS" || e1["entry_type"] != "file" || e1["mount_path"] != "/etc/tls.pem" {
		t.Fatalf("vault_list entry: %v", e1)
	}

	r = f.one(f.alice, "vault_get", `"_reqId":"vget_1","keys":["DEPLOY_KEY","NOPE"]`, "vault_get_result", "")
	es = list(r, "entries")
	if len(es) != 1 {
		t.Fatalf("vault_get: %v", r)
	}
	if e := es[0].(map[string]any); e["ciphertext"] != vaultCipher+"AA" || e["nonce"] != vaultNonce || e["sealed_key"] != vaultSealed || e["entry_type"] != "env" {
		t.Fatalf("vault_get entry: %v", e)
	}
	if r := f.one(f.alice, "vault_get", `"keys":[]`, "vault_get_result", ""); len(list(r, "entries")) != 0 {
		t.Fatalf("vault_get []: %v", r)
	}

	// Bob (same mesh) and carol (other mesh) see nothing of alice's.
	for _, p := range []collab.Peer{f.bob, f.carol} {
		if r := f.one(p, "vault_list", ``, "vault_list_result", ""); len(list(r, "entries")) != 0 {
			t.Fatalf("%s sees alice's vault: %v", p.MemberName, r)
		}
		if r := f.one(p, "vault_get", `"keys":["DEPLOY_KEY"]`, "vault_get_result", ""); len(list(r, "entries")) != 0 {
			t.Fatalf("%s gets alice's entry: %v", p.MemberName, r)
		}
		if r := f.one(p, "vault_delete", `"key":"DEPLOY_KEY"`, "vault_ack", ""); r["action"] != "not_found" {
			t.Fatalf("%s deletes alice's entry: %v", p.MemberName, r)
		}
	}
	// Bob's own key of the same name is his.
	f.one(f.bob, "vault_set", vaultSetFields("DEPLOY_KEY", "Ym9i"), "vault_ack", "")
	r = f.one(f.alice, "vault_get", `"keys":["DEPLOY_KEY"]`, "vault_get_result", "")
	if e := list(r, "entries")[0].(map[string]any); e["ciphertext"] != vaultCipher+"AA" {
		t.Fatalf("bob's write changed alice's entry: %v", e)
	}

	r = f.one(f.alice, "vault_delete", `"_reqId":"vdel_1","key":"DEPLOY_KEY"`, "vault_ack", "")
	if r["action"] != "deleted" || r["_reqId"] != "vdel_1" {
		t.Fatalf("vault_delete: %v", r)
	}
	if r := f.one(f.alice, "vault_delete", `"key":"DEPLOY_KEY"`, "vault_ack", ""); r["action"] != "not_found" {
		t.Fatalf("vault_delete twice: %v", r)
	}

	// Hostile fields: the verb's own reply with a code, read as a failure by
	// the client (action not_found), never stored.
	big := strings.Repeat("A", 48*1024+4)
	for _, tc := range []struct{ typ, fields, code string }{
		{"vault_set", vaultSetFields("", vaultCipher), "invalid_args"},
		{"vault_set", vaultSetFields(strings.Repeat("k", 129), vaultCipher), "invalid_args"},
		{"vault_set", vaultSetFields("BIG", big), "invalid_args"},
		{"vault_set", vaultSetFields("BAD", "not base64!"), "invalid_args"},
		{"vault_set", `"key":"K","ciphertext":"YQ==","nonce":"bg==","sealed_key":"aw==","entry_type":"binary"`, "invalid_args"},
		{"vault_set", `"key":"K","ciphertext":"YQ==","nonce":"bg=="`, "invalid_args"},
		{"vault_set", `"key":"K","ciphertext":42,"nonce":"bg==","sealed_key":"aw=="`, "invalid_args"},
		{"vault_get", `"keys":"K"`, "invalid_args"},
		{"vault_delete", `"key":"a\u0000b"`, "invalid_args"},
	} {
		r := f.one(f.alice, tc.typ, `"_reqId":"h"`+prefixComma(tc.fields), map[string]string{
			"vault_set": "vault_ack", "vault_get": "vault_get_result", "vault_delete": "vault_ack"}[tc.typ], tc.code)
		if r["_reqId"] != "h" || (tc.typ != "vault_get" && r["action"] != "not_found") {
			t.Fatalf("%s %.60s: %v", tc.typ, tc.fields, r)
		}
	}
	if n := len(f.column(`SELECT key FROM mesh.vault_entry WHERE member_id = '` + f.alice.MemberID + `'`)); n != 1 {
		t.Fatalf("alice has %d entries after the rejections, want 1 (TLS)", n)
	}
}

// TestVaultEntryCap: a member keeps at most 256 keys; overwriting one of
// them still works at the cap.
func TestVaultEntryCap(t *testing.T) {
	f := newKeyedFixture(t, collab.Config{}, testKeyring(t))
	for i := 0; i < 256; i++ {
		f.one(f.bob, "vault_set", `"key":"K`+strconv.Itoa(i)+`","ciphertext":"YQ==","nonce":"bg==","sealed_key":"aw=="`, "vault_ack", "")
	}
	f.one(f.bob, "vault_set", `"key":"K256","ciphertext":"YQ==","nonce":"bg==","sealed_key":"aw=="`, "vault_ack", "limit_reached")
	f.one(f.bob, "vault_set", `"key":"K7","ciphertext":"Yg==","nonce":"bg==","sealed_key":"aw=="`, "vault_ack", "")
	f.one(f.alice, "vault_set", `"key":"K256","ciphertext":"YQ==","nonce":"bg==","sealed_key":"aw=="`, "vault_ack", "")
}

// TestSecretsWithoutKey: without BROKER_ENCRYPTION_KEY vault and webhook
// verbs answer their typed fallback naming the reason, and nothing is
// stored.
func TestSecretsWithoutKey(t *testing.T) {
	f := newFixture(t, collab.Config{})
	for _, tc := range []struct{ typ, fields, want, code string }{
		{"vault_set", vaultSetFields("K", vaultCipher), "vault_ack", ""},
		{"vault_list", ``, "vault_list_result", ""},
		{"vault_get", `"keys":["K"]`, "vault_get_result", ""},
		{"vault_delete", `"key":"K"`, "vault_ack", ""},
		{"create_webhook", `"name":"ci"`, "error", "unsupported"},
		{"list_webhooks", ``, "webhook_list", ""},
		{"delete_webhook", `"name":"ci"`, "error", "unsupported"},
	} {
		r := f.one(f.alice, tc.typ, `"_reqId":"r1"`+prefixComma(tc.fields), tc.want, tc.code)
		if r["_reqId"] != "r1" {
			t.Errorf("%s: %v", tc.typ, r)
		}
		switch tc.want {
		case "vault_ack":
			if r["action"] != "not_found" {
				t.Errorf("%s: %v reads as success", tc.typ, r)
			}
		case "error":
			if r["code"] != "unsupported" || !strings.Contains(r["message"].(string), "BROKER_ENCRYPTION_KEY") {
				t.Errorf("%s: %v", tc.typ, r)
			}
		}
	}
	if n := len(f.column(`SELECT id FROM mesh.vault_entry UNION ALL SELECT id FROM mesh.webhook`)); n != 0 {
		t.Fatalf("%d secret rows stored without a key", n)
	}
}

// TestWebhooks: any member creates and lists; the secret is sealed at rest
// and only its hash is searchable; a name is unique among active webhooks
// and can be created again after a delete (unlike upstream); only the
// creator or an admin deletes; another mesh sees nothing.
func TestWebhooks(t *testing.T) {
	f := newKeyedFixture(t, collab.Config{PublicURL: "https://meshd.example.com/"}, testKeyring(t))
	r := f.one(f.bob, "create_webhook", `"_reqId":"w1","name":"ci"`, "webhook_ack", "")
	secret, _ := r["secret"].(string)
	if len(secret) != 64 || r["name"] != "ci" || r["_reqId"] != "w1" ||
		r["url"] != "https://meshd.example.com/hook/"+f.mesh.ID+"/"+secret {
		t.Fatalf("create_webhook: %v", r)
	}
	stored := f.column(`SELECT secret || ' ' || secret_hash FROM mesh.webhook`)
	if len(stored) != 1 || !strings.HasPrefix(stored[0], "enc1:") || strings.Contains(stored[0], secret) {
		t.Fatalf("webhook secret at rest: %v", stored)
	}

	if r := f.one(f.alice, "create_webhook", `"_reqId":"w2","name":"ci"`, "error", "webhook_exists"); r["_reqId"] != "w2" {
		t.Fatalf("duplicate: %v", r)
	}
	f.one(f.alice, "create_webhook", `"name":""`, "error", "invalid_webhook")
	f.one(f.alice, "create_webhook", `"name":"deploys"`, "webhook_ack", "")

	r = f.one(f.alice, "list_webhooks", `"_reqId":"l1"`, "webhook_list", "")
	hs := list(r, "webhooks")
	if len(hs) != 2 || r["_reqId"] != "l1" {
		t.Fatalf("list_webhooks: %v", r)
	}
	if h := hs[0].(map[string]any); h["name"] != "ci" || h["active"] != true || !strings.HasSuffix(h["url"].(string), "/"+secret) || h["createdAt"] == nil {
		t.Fatalf("list_webhooks entry: %v", h)
	}
	if r := f.one(f.carol, "list_webhooks", ``, "webhook_list", ""); len(list(r, "webhooks")) != 0 {
		t.Fatalf("other mesh sees webhooks: %v", r)
	}

	// Bob did not create "deploys" and is no admin; carol is in another mesh.
	f.one(f.bob, "delete_webhook", `"_reqId":"d0","name":"deploys"`, "error", "forbidden")
	f.one(f.carol, "delete_webhook", `"name":"ci"`, "error", "not_found")
	r = f.one(f.bob, "delete_webhook", `"_reqId":"d1","name":"ci"`, "webhook_ack", "")
	if r["url"] != "" || r["secret"] != "" || r["_reqId"] != "d1" {
		t.Fatalf("delete_webhook: %v", r)
	}
	f.one(f.bob, "delete_webhook", `"name":"ci"`, "error", "not_found")
	f.one(f.alice, "delete_webhook", `"name":"deploys"`, "webhook_ack", "") // admin
	r = f.one(f.bob, "create_webhook", `"name":"ci"`, "webhook_ack", "")
	if r["secret"] == secret {
		t.Fatal("re-created webhook kept the old secret")
	}
	if r := f.one(f.alice, "list_webhooks", ``, "webhook_list", ""); len(list(r, "webhooks")) != 1 {
		t.Fatalf("list after delete: %v", r)
	}
}

// TestAPIKeys: E.3's create/list/revoke with upstream's secret format; only
// the hash is stored; capabilities are checked (admin only by admins);
// revoke takes a literal prefix of 6+ characters and only the issuer or an
// admin may revoke.
func TestAPIKeys(t *testing.T) {
	f := newFixture(t, collab.Config{})
	r := f.one(f.bob, "apikey_create", `"_reqId":"k1","label":"cli-members-1","capabilities":["read","read"],"expiresAt":"`+time.Now().Add(5*time.Minute).UTC().Format(time.RFC3339Nano)+`"`, "apikey_created", "")
	secret, _ := r["secret"].(string)
	id, _ := r["id"].(string)
	if len(secret) != 46 || !strings.HasPrefix(secret, "cm_") || r["prefix"] != secret[:11] || len(id) != 32 ||
		r["_reqId"] != "k1" || r["topicScopes"] != nil || len(list(r, "capabilities")) != 1 {
		t.Fatalf("apikey_created: %v", r)
	}
	if stored := f.column(`SELECT secret_hash || secret_prefix FROM mesh.api_key`); len(stored) != 1 || strings.Contains(stored[0], secret) {
		t.Fatalf("api key at rest: %v", stored)
	}
	r2 := f.one(f.alice, "apikey_create", `"label":"ops","capabilities":["admin","send"],"topicScopes":["general"]`, "apikey_created", "")

	for _, tc := range []struct {
		p            collab.Peer
		fields, code string
	}{
		{f.bob, `"label":"","capabilities":["read"]`, "invalid_args"},
		{f.bob, `"label":"x","capabilities":[]`, "invalid_args"},
		{f.bob, `"label":"x","capabilities":["root"]`, "invalid_args"},
		{f.bob, `"label":"x","capabilities":["admin"]`, "forbidden"},
		{f.bob, `"label":"x","capabilities":["read"],"expiresAt":"tomorrow"`, "invalid_args"},
		{f.bob, `"label":"x","capabilities":["read"],"expiresAt":"2001-01-01T00:00:00Z"`, "invalid_args"},
	} {
		r := f.one(tc.p, "apikey_create", `"_reqId":"bad"`+prefixComma(tc.fields), "error", tc.code)
		if r["_reqId"] != "bad" || r["id"] != nil {
			t.Fatalf("%s: %v", tc.fields, r)
		}
	}

	r = f.one(f.bob, "apikey_list", `"_reqId":"l"`, "apikey_list_response", "")
	keys := list(r, "keys")
	if len(keys) != 2 || r["_reqId"] != "l" {
		t.Fatalf("apikey_list: %v", r)
	}
	k0 := keys[0].(map[string]any) // newest first: alice's
	if k0["id"] != r2["id"] || k0["secret"] != nil || k0["revokedAt"] != nil || list(k0, "topicScopes")[0] != "general" {
		t.Fatalf("apikey_list entry: %v", k0)
	}
	if r := f.one(f.carol, "apikey_list", ``, "apikey_list_response", ""); len(list(r, "keys")) != 0 {
		t.Fatalf("other mesh lists keys: %v", r)
	}

	// Bob may not revoke alice's key; alice (admin) may revoke bob's.
	f.one(f.bob, "apikey_revoke", `"id":`+jsonStr(r2["id"].(string)), "apikey_revoke_response", "forbidden")
	f.one(f.bob, "apikey_revoke", `"id":"abc"`, "apikey_revoke_response", "invalid_args")
	if r := f.one(f.bob, "apikey_revoke", `"id":"%%%%%%"`, "apikey_revoke_response", ""); r["status"] != "not_found" {
		t.Fatalf("LIKE pattern matched: %v", r)
	}
	if r := f.one(f.carol, "apikey_revoke", `"id":`+jsonStr(id), "apikey_revoke_response", ""); r["status"] != "not_found" {
		t.Fatalf("other mesh revoked: %v", r)
	}
	r = f.one(f.alice, "apikey_revoke", `"_reqId":"rv","id":`+jsonStr(id[:10]), "apikey_revoke_response", "")
	if r["status"] != "revoked" || r["id"] != id || r["_reqId"] != "rv" {
		t.Fatalf("apikey_revoke by prefix: %v", r)
	}
	if r := f.one(f.bob, "apikey_revoke", `"id":`+jsonStr(id), "apikey_revoke_response", ""); r["status"] != "revoked" {
		t.Fatalf("revoke twice: %v", r)
	}
	r = f.one(f.bob, "apikey_list", ``, "apikey_list_response", "")
	if k := list(r, "keys")[1].(map[string]any); k["id"] != id || k["revokedAt"] == nil {
		t.Fatalf("revoked key in list: %v", k)
	}
}
