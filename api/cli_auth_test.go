package api_test

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/broker"
)

// Bearer auth (B.9.3): each rejection is a specific 401, and a valid token
// still works after them.
func TestCLIAuthRejections(t *testing.T) {
	e := newEnv(t, 1, nil)
	good := e.cliToken("owner")
	revoked := e.cliToken("owner")
	cliDo(t, "POST", e.cliURL("/cli/session/revoke"), "", map[string]any{"token": revoked}).expect(t, 200, "")
	tests := []struct {
		name, authz string
		body        any
		want        string
	}{
		{"missing_bearer_token", "", map[string]any{"name": "x"}, "missing_bearer_token"},
		{"missing_bearer_token_lowercase_scheme", "bearer " + good, nil, "missing_bearer_token"},
		{"missing_bearer_token_basic", "Basic Zm9vOmJhcg==", nil, "missing_bearer_token"},
		{"missing_bearer_token_glued", "Bearer" + good, nil, "missing_bearer_token"},
		{"missing_bearer_token_legacy_off", "", map[string]any{"user_id": "owner"}, "missing_bearer_token"},
		{"empty_bearer_token", "Bearer ", nil, "empty_bearer_token"},
		{"empty_bearer_token_spaces", "Bearer  \t  ", nil, "empty_bearer_token"},
		{"empty_bearer_token_bare_scheme", "Bearer", nil, "empty_bearer_token"},
		{"empty_bearer_token_nbsp", "Bearer \u00a0", nil, "empty_bearer_token"},
		{"invalid_or_revoked_token_garbage", "Bearer not-a-token", nil, "invalid_or_revoked_token"},
		{"invalid_or_revoked_token_revoked", "Bearer " + revoked, nil, "invalid_or_revoked_token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.authz != "" {
				hdr = []string{"Authorization", tt.authz}
			}
			r := cliDo(t, "POST", e.cliURL("/cli/mesh/create"), "", tt.body, hdr...).expect(t, 401, tt.want)
			if r.header.Get("Deprecation") != "" || r.header.Get("Warning") != "" {
				t.Fatalf("deprecation headers on a rejection: %v", r.header)
			}
		})
	}
	// Every authenticated route answers 401 without credentials.
	for _, route := range []struct{ method, path string }{
		{"GET", "/cli/meshes"}, {"POST", "/cli/mesh/create"}, {"POST", "/cli/mesh/x/invite"},
		{"POST", "/cli/mesh/x/grants"}, {"DELETE", "/cli/mesh/x"},
	} {
		body := any(nil)
		if route.path == "/cli/mesh/x/grants" {
			body = map[string]any{"grants": map[string]any{}}
		}
		cliDo(t, route.method, e.cliURL(route.path), "", body).expect(t, 401, "missing_bearer_token")
	}
	if got := counter(t, e.replicas[0], "broker_legacy_auth_hits_total"); got != 0 {
		t.Fatalf("legacy hits = %v with the shim off", got)
	}
	// The good token still works, with the scheme's trailing spaces trimmed.
	cliDo(t, "GET", e.cliURL("/cli/meshes"), "", nil, "Authorization", "Bearer "+good+"  ").expect(t, 200, "")
}

// POST /cli/session/revoke: possession of the token revokes it.
func TestCLISessionRevoke(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	cliDo(t, "GET", e.cliURL("/cli/meshes"), tok, nil).expect(t, 200, "")
	r := cliDo(t, "POST", e.cliURL("/cli/session/revoke"), "", map[string]any{"token": tok}).expect(t, 200, "")
	if r.body["ok"] != true || r.body["found"] != true {
		t.Fatalf("%s", r.raw)
	}
	cliDo(t, "GET", e.cliURL("/cli/meshes"), tok, nil).expect(t, 401, "invalid_or_revoked_token")
	if r := cliDo(t, "POST", e.cliURL("/cli/session/revoke"), "", map[string]any{"token": "unknown"}); r.body["found"] != false {
		t.Fatalf("unknown token: %s", r.raw)
	}
	cliDo(t, "POST", e.cliURL("/cli/session/revoke"), "", map[string]any{}).expect(t, 400, "token required")
	cliDo(t, "POST", e.cliURL("/cli/session/revoke"), "", map[string]any{"token": 5}).expect(t, 400, "Invalid body")
}

// BROKER_LEGACY_AUTH=1 (B.9.3): body user_id (or ?user_id= on GET
// /cli/meshes) is accepted with both deprecation headers, the counter and a
// warn log; a bearer token takes precedence and carries no headers.
func TestCLILegacyShim(t *testing.T) {
	logs := &cliLogBuffer{}
	e := newEnv(t, 1, func(_ *broker.Config, c *api.Config) {
		c.LegacyAuth = true
		c.Logger = zerolog.New(logs).Level(zerolog.WarnLevel)
	})
	hits := func() float64 { return counter(t, e.replicas[0], "broker_legacy_auth_hits_total") }
	if hits() != 0 {
		t.Fatal("counter not 0 at start")
	}
	check := func(r cliResp) {
		t.Helper()
		if got := r.header.Get("Deprecation"); got != `version="legacy-body-userid"; sunset="2026-05-15"` {
			t.Fatalf("Deprecation = %q", got)
		}
		if got := r.header.Get("Warning"); got != `299 - "body.user_id auth is deprecated; send Authorization: Bearer <session_token>"` {
			t.Fatalf("Warning = %q", got)
		}
	}
	key := strings.Repeat("ab", 32)
	r := cliDo(t, "POST", e.cliURL("/cli/mesh/create"), "", map[string]any{"name": "Legacy", "pubkey": key, "user_id": "alice"}).expect(t, 200, "")
	check(r)
	if hits() != 1 {
		t.Fatalf("hits = %v, want 1", hits())
	}
	if !strings.Contains(logs.String(), `"legacy auth accepted"`) || !strings.Contains(logs.String(), `"user_id":"alice"`) ||
		!strings.Contains(logs.String(), `"route":"POST /cli/mesh/create"`) {
		t.Fatalf("warn log: %s", logs.String())
	}
	r = cliDo(t, "GET", e.cliURL("/cli/meshes?user_id=alice"), "", nil).expect(t, 200, "")
	check(r)
	if ms := r.body["meshes"].([]any); len(ms) != 1 || ms[0].(map[string]any)["slug"] != "legacy" {
		t.Fatalf("meshes %s", r.raw)
	}
	if hits() != 2 {
		t.Fatalf("hits = %v, want 2", hits())
	}
	// Non-string user_id and empty user_id are not credentials.
	cliDo(t, "POST", e.cliURL("/cli/mesh/legacy/invite"), "", map[string]any{"user_id": 42}).expect(t, 401, "missing_bearer_token")
	cliDo(t, "POST", e.cliURL("/cli/mesh/legacy/invite"), "", map[string]any{"user_id": ""}).expect(t, 401, "missing_bearer_token")
	// A bearer token wins over body.user_id: no headers, no hit, its user.
	tok := e.cliToken("bob")
	r = cliDo(t, "POST", e.cliURL("/cli/mesh/legacy/invite"), tok, map[string]any{"user_id": "alice"}).expect(t, 403, "Only the owner can invite (for now)")
	if r.header.Get("Deprecation") != "" || hits() != 2 {
		t.Fatalf("bearer request went through the shim: %v hits %v", r.header, hits())
	}
	// Legacy callers reach every CLI route.
	cliDo(t, "POST", e.cliURL("/cli/mesh/legacy/invite"), "", map[string]any{"user_id": "alice"}).expect(t, 200, "")
	cliDo(t, "POST", e.cliURL("/cli/mesh/legacy/grants"), "", map[string]any{"user_id": "alice", "grants": map[string]any{key: []string{"dm"}}}).expect(t, 200, "")
	check(cliDo(t, "DELETE", e.cliURL("/cli/mesh/legacy"), "", map[string]any{"user_id": "alice"}).expect(t, 200, ""))
	if hits() != 5 {
		t.Fatalf("hits = %v, want 5", hits())
	}
}
