package api_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
)

// Every JSON route caps its body at MAX_MESSAGE_BYTES (B.9.2) and reports
// malformed JSON as 400 with a reason — before authentication, so neither
// needs a token.
func TestCLIBodyLimitsAndMalformedJSON(t *testing.T) {
	e := newEnv(t, 1, func(_ *broker.Config, c *api.Config) { c.MaxMessageBytes = 1024 })
	tok := e.cliToken("owner")
	routes := []struct{ method, path string }{
		{"POST", "/cli/session/revoke"}, {"POST", "/cli/mesh/create"}, {"POST", "/cli/mesh/x/invite"},
		{"POST", "/cli/mesh/x/grants"}, {"DELETE", "/cli/mesh/x"}, {"POST", "/join"},
	}
	big := `{"name":"` + strings.Repeat("a", 2000) + `"}`
	for _, rt := range routes {
		t.Run("payload_too_large"+strings.ReplaceAll(rt.path, "/", "_"), func(t *testing.T) {
			r := cliDo(t, rt.method, e.cliURL(rt.path), tok, big).expect(t, 413, "payload too large")
			if r.body["ok"] != false {
				t.Fatalf("%s", r.raw)
			}
			// Chunked, without Content-Length: the cap applies while reading.
			cliDo(t, rt.method, e.cliURL(rt.path), tok, strings.NewReader(big)).expect(t, 413, "payload too large")
		})
		for _, bad := range []struct{ name, body, reason string }{
			{"truncated", `{"name":`, "malformed JSON"},
			{"trailing_garbage", `{"name":"x"} x`, "malformed JSON"},
			{"array", `[1,2]`, "body must be a JSON object"},
			{"string", `"hello"`, "body must be a JSON object"},
			{"null", `null`, "body must be a JSON object"},
		} {
			t.Run("invalid_body_"+bad.name+strings.ReplaceAll(rt.path, "/", "_"), func(t *testing.T) {
				r := cliDo(t, rt.method, e.cliURL(rt.path), "", bad.body).expect(t, 400, "Invalid body")
				if reason, _ := r.body["reason"].(string); !strings.Contains(reason, bad.reason) {
					t.Fatalf("reason %q, want %q", reason, bad.reason)
				}
			})
		}
	}
	// A body just under the cap is fine.
	cliDo(t, "POST", e.cliURL("/cli/mesh/create"), tok,
		map[string]any{"name": "ok", "pubkey": strings.Repeat("0", 64), "pad": strings.Repeat("p", 800)}).expect(t, 200, "")
}

// POST /cli/mesh/create validates everything before writing (A.3-16): no
// 400 leaves a row behind.
func TestCLIMeshCreateValidation(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	key := client.GenerateIdentity().Pubkey
	tests := []struct {
		name string
		body any
		want string
	}{
		{"name_required_missing", map[string]any{"pubkey": key}, "name required"},
		{"name_required_blank", map[string]any{"name": "   ", "pubkey": key}, "name required"},
		{"name_too_long", map[string]any{"name": strings.Repeat("n", 101), "pubkey": key}, "name too long (max 100 characters)"},
		{"pubkey_missing", map[string]any{"name": "Team"}, "pubkey required (64 hex chars)"},
		{"pubkey_short", map[string]any{"name": "Team", "pubkey": key[:63]}, "pubkey required (64 hex chars)"},
		{"pubkey_not_hex", map[string]any{"name": "Team", "pubkey": strings.Repeat("z", 64)}, "pubkey required (64 hex chars)"},
		{"slug_empty_after_derivation", map[string]any{"name": "!!!", "pubkey": key}, "slug must contain a letter or digit (a-z, 0-9)"},
		{"slug_given_but_empty", map[string]any{"name": "Team", "slug": "--", "pubkey": key}, "slug must contain a letter or digit (a-z, 0-9)"},
		{"name_wrong_type", map[string]any{"name": 7, "pubkey": key}, "Invalid body"},
		{"pubkey_wrong_type", map[string]any{"name": "Team", "pubkey": []int{1}}, "Invalid body"},
		{"display_name_too_long", map[string]any{"name": "Team", "pubkey": key, "display_name": strings.Repeat("d", 101)}, "display_name too long (max 100 characters)"},
		{"display_name_wrong_type", map[string]any{"name": "Team", "pubkey": key, "display_name": 3}, "Invalid body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cliDo(t, "POST", e.cliURL("/cli/mesh/create"), tok, tt.body).expect(t, 400, tt.want)
			// The reserved system mesh (meshd.SystemMeshID, "meshd-system") and its member exist from the migrations.
			if n := e.cliInt("SELECT count(*) FROM mesh.mesh WHERE id <> $1", "meshd-system") +
				e.cliInt("SELECT count(*) FROM mesh.member WHERE mesh_id <> $1", "meshd-system"); n != 0 {
				t.Fatalf("%d rows written by a rejected create", n)
			}
		})
	}
	// The valid create after the hostile ones: mesh, keys, owner member.
	r := cliDo(t, "POST", e.cliURL("/cli/mesh/create"), tok, map[string]any{"name": "Team Rocket", "pubkey": strings.ToUpper(key)}).expect(t, 200, "")
	if r.body["slug"] != "team-rocket" || r.body["name"] != "Team Rocket" || r.body["id"] == "" || r.body["member_id"] == "" {
		t.Fatalf("%s", r.raw)
	}
	id, member := r.body["id"].(string), r.body["member_id"].(string)
	if n := e.cliInt(`SELECT count(*) FROM mesh.mesh WHERE id = $1 AND owner_user_id = 'owner'
		AND length(owner_pubkey) = 64 AND length(owner_secret_key) = 128 AND length(root_key) = 43`, id); n != 1 {
		t.Fatal("mesh row lacks owner keys or root key")
	}
	if n := e.cliInt(`SELECT count(*) FROM mesh.member WHERE id = $1 AND mesh_id = $2 AND user_id = 'owner'
		AND role = 'admin' AND display_name = 'Team Rocket-owner' AND peer_pubkey = $3`, member, id, key); n != 1 {
		t.Fatal("owner member row wrong (want admin, '<name>-owner', lower-case pubkey)")
	}
	// display_name names the owner's member row instead of "<name>-owner".
	r = cliDo(t, "POST", e.cliURL("/cli/mesh/create"), tok, map[string]any{"name": "Named", "pubkey": key, "display_name": "  alice  "}).expect(t, 200, "")
	if n := e.cliInt(`SELECT count(*) FROM mesh.member WHERE id = $1 AND display_name = 'alice'`, r.body["member_id"]); n != 1 {
		t.Fatal("owner member row not named by display_name (trimmed)")
	}
}

// Slugs: derived from the name, suffixed -2 … -100 while taken by a live
// mesh, then 409; archiving frees a slug.
func TestCLIMeshSlugCollisions(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	for i, want := range []string{"team-a", "team-a-2", "team-a-3"} {
		if got := e.createMeshHTTP(tok, "Team  A!").slug; got != want {
			t.Fatalf("create %d: slug %q, want %q", i, got, want)
		}
	}
	key := client.GenerateIdentity().Pubkey
	r := cliDo(t, "POST", e.cliURL("/cli/mesh/create"), tok, map[string]any{"name": "x", "slug": "My Slug!", "pubkey": key}).expect(t, 200, "")
	if r.body["slug"] != "my-slug" {
		t.Fatalf("explicit slug: %s", r.raw)
	}
	cliDo(t, "DELETE", e.cliURL("/cli/mesh/team-a"), tok, nil).expect(t, 200, "")
	if got := e.createMeshHTTP(tok, "Team A").slug; got != "team-a" {
		t.Fatalf("archived slug not reused: %q", got)
	}
	e.cliExec(`INSERT INTO mesh.mesh (id, slug, name)
		SELECT 'full' || i, CASE WHEN i = 1 THEN 'full' ELSE 'full-' || i END, 'full' FROM generate_series(1, 100) i`)
	before := e.cliInt("SELECT count(*) FROM mesh.mesh")
	cliDo(t, "POST", e.cliURL("/cli/mesh/create"), tok, map[string]any{"name": "Full", "pubkey": key}).expect(t, 409, "Too many meshes with this name")
	if after := e.cliInt("SELECT count(*) FROM mesh.mesh"); after != before {
		t.Fatalf("409 wrote %d meshes", after-before)
	}
	// Concurrent creates with one name all succeed with distinct slugs.
	const n = 8
	slugs := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			r := cliDo(t, "POST", e.cliURL("/cli/mesh/create"), tok, map[string]any{"name": "Race", "pubkey": key})
			s, _ := r.body["slug"].(string)
			slugs <- fmt.Sprintf("%d %s", r.status, s)
		}()
	}
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		s := <-slugs
		if !strings.HasPrefix(s, "200 race") || seen[s] {
			t.Fatalf("concurrent create: %q (seen %v)", s, seen)
		}
		seen[s] = true
	}
}

// GET /cli/meshes lists the caller's meshes with role, ownership, counts
// and the broker URL clients connect to.
func TestCLIMeshList(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	m := e.createMeshHTTP(tok, "Listed")
	inv := e.inviteHTTP(tok, m.slug, nil)
	peer := client.GenerateIdentity()
	j := cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(inv.token, inv.payload, peer.Pubkey, "peer")).expect(t, 200, "")
	e.createMeshHTTP(e.cliToken("someone-else"), "Other")

	e.dial(0, cliIdentity(m.id, j.body["memberId"].(string), "peer", peer), nil)
	r := cliDo(t, "GET", e.cliURL("/cli/meshes"), tok, nil).expect(t, 200, "")
	ms := r.body["meshes"].([]any)
	if len(ms) != 1 {
		t.Fatalf("meshes %s", r.raw)
	}
	got := ms[0].(map[string]any)
	wantURL := "ws" + strings.TrimPrefix(e.replicas[0].hs.URL, "http") + "/ws"
	if got["id"] != m.id || got["slug"] != "listed" || got["name"] != "Listed" || got["role"] != "admin" || got["is_owner"] != true ||
		got["member_count"] != float64(2) || got["active_peers"] != float64(1) || got["broker_url"] != wantURL {
		t.Fatalf("entry %v (want broker_url %s)", got, wantURL)
	}
	if _, err := time.Parse(time.RFC3339, got["joined_at"].(string)); err != nil {
		t.Fatalf("joined_at: %v", err)
	}
	r = cliDo(t, "GET", e.cliURL("/cli/meshes"), e.cliToken("nobody"), nil).expect(t, 200, "")
	if r.raw != "{\"meshes\":[]}\n" {
		t.Fatalf("empty list %q", r.raw)
	}
}

// POST /cli/mesh/:slug/rename changes the name (owner only), not the slug.
func TestCLIMeshRename(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	m := e.createMeshHTTP(tok, "Old Name")
	url := e.cliURL("/cli/mesh/old-name/rename")
	cliDo(t, "POST", url, tok, map[string]any{"name": "  "}).expect(t, 400, "name required")
	cliDo(t, "POST", url, tok, map[string]any{"name": strings.Repeat("n", 101)}).expect(t, 400, "name too long (max 100 characters)")
	cliDo(t, "POST", url, tok, map[string]any{"name": 5}).expect(t, 400, "Invalid body")
	cliDo(t, "POST", url, e.cliToken("intruder"), map[string]any{"name": "Mine"}).expect(t, 403, "Only the mesh owner can rename it")
	cliDo(t, "POST", e.cliURL("/cli/mesh/nope/rename"), tok, map[string]any{"name": "x"}).expect(t, 404, "Mesh not found")
	if n := e.cliInt("SELECT count(*) FROM mesh.mesh WHERE id = $1 AND name = 'Old Name'", m.id); n != 1 {
		t.Fatal("a refused rename wrote")
	}
	r := cliDo(t, "POST", url, tok, map[string]any{"name": " New Name "}).expect(t, 200, "")
	if r.body["ok"] != true || r.body["slug"] != "old-name" || r.body["name"] != "New Name" || r.body["id"] != m.id {
		t.Fatalf("%s", r.raw)
	}
	if n := e.cliInt("SELECT count(*) FROM mesh.mesh WHERE id = $1 AND name = 'New Name' AND slug = 'old-name'", m.id); n != 1 {
		t.Fatal("mesh row not renamed (or slug changed)")
	}
}

// DELETE /cli/mesh/:slug archives (owner only); the mesh disappears from
// lists, invites and joins.
func TestCLIMeshDelete(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	m := e.createMeshHTTP(tok, "Doomed")
	inv := e.inviteHTTP(tok, m.slug, nil)
	cliDo(t, "DELETE", e.cliURL("/cli/mesh/doomed"), e.cliToken("intruder"), nil).expect(t, 403, "Only the mesh owner can delete it")
	cliDo(t, "DELETE", e.cliURL("/cli/mesh/nope"), tok, nil).expect(t, 404, "Mesh not found")
	r := cliDo(t, "DELETE", e.cliURL("/cli/mesh/doomed"), tok, nil).expect(t, 200, "")
	if r.body["ok"] != true || r.body["deleted"] != "doomed" {
		t.Fatalf("%s", r.raw)
	}
	cliDo(t, "DELETE", e.cliURL("/cli/mesh/doomed"), tok, nil).expect(t, 404, "Mesh not found")
	if n := e.cliInt("SELECT count(*) FROM mesh.mesh WHERE id = $1 AND archived_at IS NOT NULL", m.id); n != 1 {
		t.Fatal("mesh row not archived")
	}
	r = cliDo(t, "GET", e.cliURL("/cli/meshes"), tok, nil).expect(t, 200, "")
	if len(r.body["meshes"].([]any)) != 0 {
		t.Fatalf("archived mesh listed: %s", r.raw)
	}
	cliDo(t, "POST", e.cliURL("/cli/mesh/doomed/invite"), tok, nil).expect(t, 404, "Mesh not found")
	cliDo(t, "POST", e.cliURL("/join"), "", cliJoinBody(inv.token, inv.payload, client.GenerateIdentity().Pubkey, "late")).expect(t, 400, "mesh_not_found")
}

// POST /cli/mesh/:slug/grants merges into the caller's own member row
// (B.7): arrays replace, [] blocks, null deletes.
func TestCLIGrants(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	m := e.createMeshHTTP(tok, "Granted")
	a, b, c := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	post := func(token string, body any) cliResp {
		return cliDo(t, "POST", e.cliURL("/cli/mesh/granted/grants"), token, body)
	}
	r := post(tok, map[string]any{"grants": map[string]any{a: []string{"dm"}, b: []string{}}}).expect(t, 200, "")
	if r.raw != fmt.Sprintf("{\"grants\":{%q:[\"dm\"],%q:[]},\"ok\":true}\n", a, b) {
		t.Fatalf("first merge: %s", r.raw)
	}
	r = post(tok, map[string]any{"grants": map[string]any{a: nil, c: []string{"broadcast", "dm"}}}).expect(t, 200, "")
	if r.raw != fmt.Sprintf("{\"grants\":{%q:[],%q:[\"broadcast\",\"dm\"]},\"ok\":true}\n", b, c) {
		t.Fatalf("second merge: %s", r.raw)
	}
	if n := e.cliInt(`SELECT count(*) FROM mesh.member WHERE id = $1 AND peer_grants = $2::jsonb`, m.memberID,
		fmt.Sprintf(`{%q:[],%q:["broadcast","dm"]}`, b, c)); n != 1 {
		t.Fatal("grants not stored on the owner's member row")
	}
	post(tok, map[string]any{"grants": map[string]any{}}).expect(t, 200, "")
	for _, tt := range []struct {
		name   string
		token  string
		path   string
		body   any
		status int
		want   string
	}{
		{"grants_required_missing", tok, "", map[string]any{}, 400, "grants required"},
		{"grants_required_null", tok, "", map[string]any{"grants": nil}, 400, "grants required"},
		{"grants_required_string", tok, "", map[string]any{"grants": "dm"}, 400, "grants required"},
		{"grants_required_array", tok, "", map[string]any{"grants": []string{"dm"}}, 400, "grants required"},
		{"invalid_body_caps_string", tok, "", map[string]any{"grants": map[string]any{a: "dm"}}, 400, "Invalid body"},
		{"invalid_body_caps_numbers", tok, "", map[string]any{"grants": map[string]any{a: []int{1}}}, 400, "Invalid body"},
		{"mesh_not_found", tok, "/cli/mesh/nope/grants", map[string]any{"grants": map[string]any{}}, 404, "Mesh not found"},
		{"not_a_member", e.cliToken("stranger"), "", map[string]any{"grants": map[string]any{a: []string{}}}, 403, "Not a member of this mesh"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/cli/mesh/granted/grants"
			}
			cliDo(t, "POST", e.cliURL(path), tt.token, tt.body).expect(t, tt.status, tt.want)
		})
	}
}
