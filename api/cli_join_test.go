package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// The B.9.5 interop vector: an invite signed by the owner key with seed
// 32×0x01 has these exact canonical bytes, signature and token (the
// signature was cross-checked with OpenSSL's Ed25519 through Python's
// cryptography package), and the broker's POST /join accepts it.
func TestInviteSeedVectorJoins(t *testing.T) {
	const (
		rootKey   = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA" // base64url of bytes 1..32
		ownerPub  = "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
		canonical = "1|mesh-vector|vector|wss://ic.claudemesh.com/ws|4102444800|" + rootKey + "|member|" + ownerPub
		signature = "2f420d44d74aa5f22ed4b783dffa119092ebf36a29f0f2e52d37124e132f80ec" +
			"2d10acecbe50f9489890345f87eb5c33d14226c75d6aa3752b3ca1e242ed9403"
		tokenJSON = `{"v":1,"mesh_id":"mesh-vector","mesh_slug":"vector","broker_url":"wss://ic.claudemesh.com/ws",` +
			`"expires_at":4102444800,"mesh_root_key":"` + rootKey + `","role":"member","owner_pubkey":"` + ownerPub +
			`","signature":"` + signature + `"}`
	)
	e := newEnv(t, 1, nil)
	ctx := context.Background()
	owner := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x01}, 32))
	mesh := meshd.Mesh{ID: "mesh-vector", Slug: "vector", Name: "Vector", OwnerUserID: "owner"}
	if err := e.st.CreateMesh(ctx, &mesh); err != nil {
		t.Fatal(err)
	}
	if pub, _, _, err := e.st.EnsureOwnerKeys(ctx, mesh.ID, ownerPub, hex.EncodeToString(owner), rootKey); err != nil || pub != ownerPub {
		t.Fatalf("owner keys: %s %v", pub, err)
	}
	p := &wire.InvitePayload{V: 1, MeshID: "mesh-vector", MeshSlug: "vector", BrokerURL: "wss://ic.claudemesh.com/ws",
		ExpiresAt: 4102444800, MeshRootKey: rootKey, Role: "member"}
	wire.SignInvite(p, owner)
	if got := wire.InviteCanonical(p); got != canonical {
		t.Fatalf("canonical\n got %s\nwant %s", got, canonical)
	}
	if p.OwnerPubkey != ownerPub || p.Signature != signature {
		t.Fatalf("owner %s signature %s", p.OwnerPubkey, p.Signature)
	}
	token, err := wire.EncodeInviteToken(p)
	if err != nil {
		t.Fatal(err)
	}
	if token != base64.RawURLEncoding.EncodeToString([]byte(tokenJSON)) {
		t.Fatalf("token JSON differs:\n%s", token)
	}
	if code, err := e.st.CreateInvite(ctx, p, token, 1, "owner"); err != nil || len(code) != 8 {
		t.Fatalf("create invite: %q %v", code, err)
	}
	// Tampered copies fail before anything else; the genuine one joins.
	tampered := *p
	tampered.Role = "admin"
	peer := client.GenerateIdentity()
	cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(token, &tampered, peer.Pubkey, "peer")).expect(t, 400, "invite_bad_signature")
	r := cliDo(t, "POST", e.cliURL("/join"), "", map[string]any{
		"invite_token": token, "invite_payload": map[string]any{ // as the CLI sends the decoded object
			"v": 1, "mesh_id": "mesh-vector", "mesh_slug": "vector", "broker_url": "wss://ic.claudemesh.com/ws",
			"expires_at": 4102444800, "mesh_root_key": rootKey, "role": "member", "owner_pubkey": ownerPub, "signature": signature,
		},
		"peer_pubkey": peer.Pubkey, "display_name": "peer",
	}).expect(t, 200, "")
	if id, _ := r.body["memberId"].(string); len(id) != 32 || r.body["ok"] != true {
		t.Fatalf("%s", r.raw)
	}
}

// POST /cli/mesh/:slug/invite: owner only; a v1 payload signed by the mesh
// owner key; short links and codes resolve against meshd.
func TestCLIInviteCreateAndResolve(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	m := e.createMeshHTTP(tok, "Inviting")
	cliDo(t, "POST", e.cliURL("/cli/mesh/inviting/invite"), e.cliToken("mallory"), nil).expect(t, 403, "Only the owner can invite (for now)")
	cliDo(t, "POST", e.cliURL("/cli/mesh/nope/invite"), tok, nil).expect(t, 404, "Mesh not found")
	cliDo(t, "POST", e.cliURL("/cli/mesh/inviting/invite"), tok, map[string]any{"role": "root"}).expect(t, 400, `role must be "admin" or "member"`)
	cliDo(t, "POST", e.cliURL("/cli/mesh/inviting/invite"), tok, map[string]any{"max_uses": 0}).expect(t, 400, "max_uses must be between 1 and 1000")
	cliDo(t, "POST", e.cliURL("/cli/mesh/inviting/invite"), tok, map[string]any{"max_uses": 1.5}).expect(t, 400, "Invalid body")

	start := time.Now()
	r := cliDo(t, "POST", e.cliURL("/cli/mesh/inviting/invite"), tok, map[string]any{"role": "admin", "max_uses": 3}).expect(t, 200, "")
	code, _ := r.body["code"].(string)
	if len(code) != 8 || strings.Trim(code, "ABCDEFGHJKLMNPQRSTUVWXYZ23456789") != "" {
		t.Fatalf("code %q", code)
	}
	if r.body["url"] != e.cliURL("/i/"+code) || r.body["role"] != "admin" || r.body["max_uses"] != float64(3) {
		t.Fatalf("%s", r.raw)
	}
	token := r.body["token"].(string)
	if r.body["join_url"] != e.cliURL("/join/"+token) {
		t.Fatalf("join_url %v, want the token link", r.body["join_url"])
	}
	p, err := wire.DecodeInviteToken(token)
	if err != nil || !wire.VerifyInvite(p) {
		t.Fatalf("token %v verify %v", err, p != nil && wire.VerifyInvite(p))
	}
	wantBroker := "ws" + strings.TrimPrefix(e.replicas[0].hs.URL, "http") + "/ws"
	exp := time.Unix(p.ExpiresAt, 0)
	if p.MeshID != m.id || p.MeshSlug != "inviting" || p.BrokerURL != wantBroker || p.Role != "admin" ||
		exp.Before(start.Add(7*24*time.Hour-2*time.Second)) || exp.After(time.Now().Add(7*24*time.Hour+2*time.Second)) {
		t.Fatalf("payload %+v", p)
	}
	if r.body["expires_at"] != exp.UTC().Format(time.RFC3339) {
		t.Fatalf("expires_at %v", r.body["expires_at"])
	}
	if n := e.cliInt("SELECT count(*) FROM mesh.mesh WHERE id = $1 AND owner_pubkey = $2 AND root_key = $3", m.id, p.OwnerPubkey, p.MeshRootKey); n != 1 {
		t.Fatal("invite not signed by the stored owner key / root key")
	}
	if n := e.cliInt("SELECT count(*) FROM mesh.invite WHERE code = $1 AND token = $2 AND token_bytes = $3 AND max_uses = 3 AND role = 'admin' AND used_count = 0",
		code, token, wire.InviteCanonical(p)); n != 1 {
		t.Fatal("invite row")
	}
	for _, path := range []string{"/i/" + code, "/i/" + strings.ToLower(code), "/api/public/invite-code/" + code} {
		r := cliDo(t, "GET", e.cliURL(path), "", nil).expect(t, 200, "")
		if r.body["found"] != true || r.body["token"] != token {
			t.Fatalf("%s: %s", path, r.raw)
		}
	}
	for _, path := range []string{"/i/ZZZZZZZZ", "/i/bad-code!", "/api/public/invite-code/NOPE"} {
		if r := cliDo(t, "GET", e.cliURL(path), "", nil); r.status != 404 || r.body["found"] != false {
			t.Fatalf("%s: %d %s", path, r.status, r.raw)
		}
	}
	// Two invites in the same second still get distinct tokens and codes.
	a, b := e.inviteHTTP(tok, "inviting", nil), e.inviteHTTP(tok, "inviting", nil)
	if a.token == b.token || a.code == b.code {
		t.Fatal("same-second invites collide")
	}
}

// BROKER_URL and APP_URL shape invites and links.
func TestCLIInviteURLsFromConfig(t *testing.T) {
	e := newEnv(t, 1, func(_ *broker.Config, c *api.Config) {
		c.PublicURL = "wss://mesh.example.com/ws"
		c.AppURL = "https://app.example.com/"
	})
	tok := e.cliToken("owner")
	e.createMeshHTTP(tok, "Configured")
	inv := e.inviteHTTP(tok, "configured", nil)
	if inv.payload.BrokerURL != "wss://mesh.example.com/ws" || inv.url != "https://app.example.com/i/"+inv.code {
		t.Fatalf("broker %s url %s", inv.payload.BrokerURL, inv.url)
	}
	e2 := newEnv(t, 1, func(_ *broker.Config, c *api.Config) { c.PublicURL = "wss://mesh.example.com/ws" })
	tok2 := e2.cliToken("owner")
	e2.createMeshHTTP(tok2, "Derived")
	if inv := e2.inviteHTTP(tok2, "derived", nil); inv.url != "https://mesh.example.com/i/"+inv.code {
		t.Fatalf("link base from BROKER_URL: %s", inv.url)
	}
}

// POST /join rejects every hostile case with B.9.5's code (400
// {ok:false, error}) and consumes nothing; the genuine join goes after.
func TestJoinRejections(t *testing.T) {
	e := newEnv(t, 1, nil)
	ctx := context.Background()
	tok := e.cliToken("owner")
	m := e.createMeshHTTP(tok, "Target")
	other := e.createMeshHTTP(tok, "Other")
	good := e.inviteHTTP(tok, m.slug, map[string]any{"max_uses": 5})
	adminInv := e.inviteHTTP(tok, m.slug, map[string]any{"role": "admin"})
	otherInv := e.inviteHTTP(tok, other.slug, nil)
	expired := e.inviteHTTP(tok, m.slug, nil)
	e.cliExec("UPDATE mesh.invite SET expires_at = now() - interval '1 second' WHERE code = $1", expired.code)
	revoked := e.inviteHTTP(tok, m.slug, nil)
	e.cliExec("UPDATE mesh.invite SET revoked_at = now() WHERE code = $1", revoked.code)
	used := e.inviteHTTP(tok, m.slug, nil)
	cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(used.token, used.payload, client.GenerateIdentity().Pubkey, "first")).expect(t, 200, "")
	doomed := e.createMeshHTTP(tok, "Doomed")
	doomedInv := e.inviteHTTP(tok, doomed.slug, nil)
	cliDo(t, "DELETE", e.cliURL("/cli/mesh/doomed"), tok, nil).expect(t, 200, "")
	keyless := meshd.Mesh{Slug: "keyless", Name: "Keyless", OwnerUserID: "owner"}
	if err := e.st.CreateMesh(ctx, &keyless); err != nil {
		t.Fatal(err)
	}
	stranger := client.GenerateIdentity()

	resign := func(p *wire.InvitePayload, f func(*wire.InvitePayload), key ed25519.PrivateKey) *wire.InvitePayload {
		c := *p
		f(&c)
		if key != nil {
			wire.SignInvite(&c, key)
		}
		return &c
	}
	pk := client.GenerateIdentity().Pubkey
	tests := []struct {
		name string
		body any
		want string
	}{
		{"required_token", cliJoinBody("", good.payload, pk, "x"), "invite_token, invite_payload, peer_pubkey, display_name required"},
		{"required_payload", map[string]any{"invite_token": good.token, "peer_pubkey": pk, "display_name": "x"}, "invite_token, invite_payload, peer_pubkey, display_name required"},
		{"required_payload_not_object", map[string]any{"invite_token": good.token, "invite_payload": "abc", "peer_pubkey": pk, "display_name": "x"}, "invite_token, invite_payload, peer_pubkey, display_name required"},
		{"required_pubkey", cliJoinBody(good.token, good.payload, "", "x"), "invite_token, invite_payload, peer_pubkey, display_name required"},
		{"required_name", cliJoinBody(good.token, good.payload, pk, " "), "invite_token, invite_payload, peer_pubkey, display_name required"},
		{"malformed_pubkey_short", cliJoinBody(good.token, good.payload, pk[:63], "x"), "peer_pubkey must be 64 hex chars (32 bytes)"},
		{"display_name_over_100", cliJoinBody(good.token, good.payload, pk, strings.Repeat("é", 101)), "display_name too long (max 100 characters)"},
		{"malformed_pubkey_not_hex", cliJoinBody(good.token, good.payload, strings.Repeat("g", 64), "x"), "peer_pubkey must be 64 hex chars (32 bytes)"},
		{"invalid_body_types", map[string]any{"invite_token": 1, "invite_payload": map[string]any{}, "peer_pubkey": pk, "display_name": "x"}, "Invalid body"},
		{"bad_signature_tampered_slug", cliJoinBody(good.token, resign(good.payload, func(p *wire.InvitePayload) { p.MeshSlug = "evil" }, nil), pk, "x"), "invite_bad_signature"},
		{"bad_signature_tampered_role", cliJoinBody(good.token, resign(good.payload, func(p *wire.InvitePayload) { p.Role = "admin" }, nil), pk, "x"), "invite_bad_signature"},
		{"bad_signature_tampered_broker", cliJoinBody(good.token, resign(good.payload, func(p *wire.InvitePayload) { p.BrokerURL = "wss://evil/ws" }, nil), pk, "x"), "invite_bad_signature"},
		{"bad_signature_claims_owner_key", cliJoinBody(good.token, func() *wire.InvitePayload {
			c := resign(good.payload, func(*wire.InvitePayload) {}, stranger.Secret)
			c.OwnerPubkey = good.payload.OwnerPubkey
			return c
		}(), pk, "x"), "invite_bad_signature"},
		{"bad_signature_field_types", map[string]any{"invite_token": good.token, "invite_payload": map[string]any{"v": "1", "expires_at": "soon"}, "peer_pubkey": pk, "display_name": "x"}, "invite_bad_signature"},
		{"mesh_not_found_archived", cliJoinBody(doomedInv.token, doomedInv.payload, pk, "x"), "mesh_not_found"},
		{"mesh_not_found_unknown", cliJoinBody(good.token, resign(good.payload, func(p *wire.InvitePayload) { p.MeshID = "nope" }, stranger.Secret), pk, "x"), "mesh_not_found"},
		{"mesh_missing_owner_key", cliJoinBody(good.token, resign(good.payload, func(p *wire.InvitePayload) { p.MeshID = keyless.ID }, stranger.Secret), pk, "x"), "mesh_missing_owner_key"},
		{"owner_mismatch_non_owner_signer", cliJoinBody(good.token, resign(good.payload, func(*wire.InvitePayload) {}, stranger.Secret), pk, "x"), "invite_owner_mismatch"},
		{"invite_not_found", cliJoinBody("bm90LWEtdG9rZW4", good.payload, pk, "x"), "invite_not_found"},
		{"invite_mesh_mismatch", cliJoinBody(otherInv.token, good.payload, pk, "x"), "invite_mesh_mismatch"},
		{"invite_payload_mismatch_role_escalation", cliJoinBody(good.token, adminInv.payload, pk, "x"), "invite_payload_mismatch"},
		{"invite_revoked", cliJoinBody(revoked.token, revoked.payload, pk, "x"), "invite_revoked"},
		{"invite_expired", cliJoinBody(expired.token, expired.payload, pk, "x"), "invite_expired"},
		{"invite_exhausted", cliJoinBody(used.token, used.payload, pk, "x"), "invite_exhausted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cliDo(t, "POST", e.cliURL("/join"), "", tt.body).expect(t, 400, tt.want)
			if r.body["ok"] != false {
				t.Fatalf("%s", r.raw)
			}
		})
	}
	if n := e.cliInt("SELECT count(*) FROM mesh.member WHERE peer_pubkey = $1", pk); n != 0 {
		t.Fatalf("%d members created by rejected joins", n)
	}
	if n := e.cliInt("SELECT sum(used_count) FROM mesh.invite"); n != 1 {
		t.Fatalf("rejected joins consumed uses: total used_count %d, want 1", n)
	}
	// The genuine join after the hostile ones; the member can hello.
	r := cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(good.token, good.payload, strings.ToUpper(pk), "peer")).expect(t, 200, "")
	id := r.body["memberId"].(string)
	if n := e.cliInt("SELECT count(*) FROM mesh.member WHERE id = $1 AND mesh_id = $2 AND peer_pubkey = $3 AND role = 'member' AND display_name = 'peer' AND user_id IS NULL", id, m.id, pk); n != 1 {
		t.Fatal("member row")
	}
}

// The same pubkey joining twice gets the same member, alreadyMember:true,
// and no use is consumed; an admin invite makes an admin; joined members
// pass hello.
func TestJoinAlreadyMemberAndHello(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	m := e.createMeshHTTP(tok, "Twice")
	inv := e.inviteHTTP(tok, m.slug, map[string]any{"max_uses": 2})
	peer := client.GenerateIdentity()
	first := cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(inv.token, inv.payload, peer.Pubkey, "peer")).expect(t, 200, "")
	if _, ok := first.body["alreadyMember"]; ok {
		t.Fatalf("first join: %s", first.raw)
	}
	again := cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(inv.token, inv.payload, peer.Pubkey, "peer")).expect(t, 200, "")
	if again.body["memberId"] != first.body["memberId"] || again.body["alreadyMember"] != true {
		t.Fatalf("second join: %s", again.raw)
	}
	if n := e.cliInt("SELECT used_count FROM mesh.invite WHERE code = $1", inv.code); n != 1 {
		t.Fatalf("used_count %d after a repeat join, want 1", n)
	}
	// The owner's own pubkey is already a member too.
	cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(inv.token, inv.payload, m.key.Pubkey, "owner")).expect(t, 200, "")
	admin := e.inviteHTTP(tok, m.slug, map[string]any{"role": "admin"})
	boss := client.GenerateIdentity()
	r := cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(admin.token, admin.payload, boss.Pubkey, "boss")).expect(t, 200, "")
	if n := e.cliInt("SELECT count(*) FROM mesh.member WHERE id = $1 AND role = 'admin'", r.body["memberId"]); n != 1 {
		t.Fatal("admin invite did not make an admin")
	}
	a := e.dial(0, cliIdentity(m.id, first.body["memberId"].(string), "peer", peer), nil)
	e.dial(0, cliIdentity(m.id, m.memberID, "owner", m.key), nil)
	peers, err := a.ListPeers(context.Background())
	if err != nil || len(peers) != 2 {
		t.Fatalf("peers %v %v", peers, err)
	}
}

// Concurrent joiners on a 1-use invite: exactly one wins, the others get
// invite_exhausted, and used_count is 1.
func TestJoinConcurrentSingleUse(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	m := e.createMeshHTTP(tok, "Race")
	inv := e.inviteHTTP(tok, m.slug, nil)
	const n = 12
	var wg sync.WaitGroup
	results := make(chan cliResp, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results <- cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(inv.token, inv.payload, client.GenerateIdentity().Pubkey, "racer"))
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	var ok, exhausted int
	for r := range results {
		switch {
		case r.status == 200:
			ok++
		case r.status == 400 && r.errStr() == "invite_exhausted":
			exhausted++
		default:
			t.Errorf("unexpected %d %s", r.status, r.raw)
		}
	}
	if ok != 1 || exhausted != n-1 {
		t.Fatalf("%d ok, %d exhausted", ok, exhausted)
	}
	if used := e.cliInt("SELECT used_count FROM mesh.invite WHERE code = $1", inv.code); used != 1 {
		t.Fatalf("used_count %d", used)
	}
	if members := e.cliInt("SELECT count(*) FROM mesh.member WHERE mesh_id = $1", m.id); members != 2 {
		t.Fatalf("%d members, want owner + 1", members)
	}
}
