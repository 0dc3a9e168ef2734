package api_test

import (
	"strings"
	"testing"
)

// TestInviteClaimV2Disabled: the v2 claim the claudemesh CLI tries for an
// /i/CODE link answers as upstream with v2 off: 400 malformed for a bad
// body, else 501 invite_v2_disabled with a detail naming the token link to
// join with (spelled out for a known code), on both paths.
func TestInviteClaimV2Disabled(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	e.createMeshHTTP(tok, "Claims")
	inv := e.inviteHTTP(tok, "claims", nil)
	good := map[string]any{"recipient_x25519_pubkey": "x25519-key", "display_name": "ben"}
	for _, path := range []string{"/invites/" + inv.code + "/claim", "/api/public/invites/" + strings.ToLower(inv.code) + "/claim"} {
		r := cliDo(t, "POST", e.cliURL(path), "", good).expect(t, 501, "")
		detail, _ := r.body["detail"].(string)
		if r.body["error"] != "invite_v2_disabled" || !strings.Contains(detail, "claudemesh join "+e.cliURL("/join/"+inv.token)) {
			t.Fatalf("%s: %s", path, r.raw)
		}
	}
	r := cliDo(t, "POST", e.cliURL("/invites/ZZZZZZZZ/claim"), "", good).expect(t, 501, "")
	if d, _ := r.body["detail"].(string); r.body["error"] != "invite_v2_disabled" || !strings.Contains(d, "token link") {
		t.Fatalf("unknown code: %s", r.raw)
	}
	for _, body := range []any{"not json", `{"recipient_x25519_pubkey":7}`, `[]`, map[string]any{}} {
		if r := cliDo(t, "POST", e.cliURL("/invites/"+inv.code+"/claim"), "", body); r.status != 400 || r.body["error"] != "malformed" {
			t.Errorf("%v: %d %s", body, r.status, r.raw)
		}
	}
}
