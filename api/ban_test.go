package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/client"
)

// moderate sends a moderation verb from c and returns the broker's error
// code ("" when it answered respType).
func moderate(t *testing.T, c *client.Client, verb, target, respType string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Request(ctx, map[string]any{"type": verb, "target": target}, respType)
	var se *client.ServerError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return se.Code
	}
	t.Fatalf("%s %s: %v", verb, target, err)
	return ""
}

// Issue 12 item 3, across two replicas: a banned pubkey cannot re-join
// with a still-valid invite nor with a fresh one (403 member_banned, no use
// consumed, no member row) until it is unbanned; an admin can neither ban
// nor kick nor disconnect the mesh owner.
func TestJoinRefusesBannedPubkeyAndOwnerIsProtected(t *testing.T) {
	e := newEnv(t, 2, nil)
	tok := e.cliToken("owner")
	m := e.createMeshHTTP(tok, "Bans")
	join := func(replica int, inv cliInvite, pubkey, name string) cliResp {
		return cliDo(t, "POST", e.replicas[replica].hs.URL+"/join", "", cliJoinBody(inv.token, inv.payload, pubkey, name))
	}
	adminInv := e.inviteHTTP(tok, m.slug, map[string]any{"role": "admin"})
	inv := e.inviteHTTP(tok, m.slug, map[string]any{"max_uses": 5})
	adminKey, malloryKey := client.GenerateIdentity(), client.GenerateIdentity()
	adminID := join(0, adminInv, adminKey.Pubkey, "admin").expect(t, 200, "").body["memberId"].(string)
	malloryID := join(1, inv, malloryKey.Pubkey, "mallory").expect(t, 200, "").body["memberId"].(string)

	owner := e.dial(0, cliIdentity(m.id, m.memberID, "owner", m.key), nil)
	admin := e.dial(1, cliIdentity(m.id, adminID, "admin", adminKey), nil)
	e.dial(0, cliIdentity(m.id, malloryID, "mallory", malloryKey), nil)

	if code := moderate(t, admin, "ban", "mallory", "ban_ack"); code != "" {
		t.Fatalf("ban mallory: %s", code)
	}
	used := e.cliInt("SELECT sum(used_count) FROM mesh.invite WHERE mesh_id = $1", m.id)
	fresh := e.inviteHTTP(tok, m.slug, nil)
	for _, tt := range []struct {
		name    string
		replica int
		inv     cliInvite
		pubkey  string
	}{
		{"same_invite_other_replica", 0, inv, malloryKey.Pubkey},
		{"same_invite_same_replica", 1, inv, malloryKey.Pubkey},
		{"fresh_invite", 0, fresh, malloryKey.Pubkey},
		{"upper_case_pubkey", 1, fresh, strings.ToUpper(malloryKey.Pubkey)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := join(tt.replica, tt.inv, tt.pubkey, "mallory-again").expect(t, 403, "member_banned")
			if r.body["ok"] != false {
				t.Fatalf("%s", r.raw)
			}
		})
	}
	if n := e.cliInt("SELECT count(*) FROM mesh.member WHERE mesh_id = $1 AND peer_pubkey = $2 AND revoked_at IS NULL", m.id, malloryKey.Pubkey); n != 0 {
		t.Fatalf("banned pubkey has %d active member rows", n)
	}
	if n := e.cliInt("SELECT sum(used_count) FROM mesh.invite WHERE mesh_id = $1", m.id); n != used {
		t.Fatalf("refused joins consumed uses: %d, want %d", n, used)
	}

	// The owner is out of an admin's reach, by name or pubkey prefix.
	ownerName := "Bans-owner" // POST /cli/mesh/create names the owner "<name>-owner"
	for _, tt := range []struct{ verb, target, resp string }{
		{"ban", ownerName, "ban_ack"},
		{"ban", m.key.Pubkey[:12], "ban_ack"},
		{"kick", m.key.Pubkey, "kick_ack"},
		{"disconnect", m.key.Pubkey[:8], "disconnect_ack"},
	} {
		if code := moderate(t, admin, tt.verb, tt.target, tt.resp); code != "forbidden" {
			t.Fatalf("admin %s %s: %q, want forbidden", tt.verb, tt.target, code)
		}
	}
	if code := moderate(t, admin, "kick", "", "kick_ack"); code != "invalid" {
		t.Fatalf("empty kick: %q", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.Request(ctx, map[string]any{"type": "kick", "all": true}, "kick_ack"); err != nil {
		t.Fatalf("kick all: %v", err)
	}
	if n := e.cliInt("SELECT count(*) FROM mesh.member WHERE id = $1 AND revoked_at IS NULL", m.memberID); n != 1 {
		t.Fatal("the owner's member row was revoked")
	}
	if _, err := owner.ListPeers(ctx); err != nil {
		t.Fatalf("owner socket after an admin's kick all: %v", err)
	}
	if n := e.cliInt("SELECT count(*) FROM mesh.presence WHERE member_id = $1 AND disconnected_at IS NULL", m.memberID); n != 1 {
		t.Fatalf("owner has %d live presences after kick all, want 1", n)
	}

	// The owner may ban an admin; unban lets mallory back in (same member).
	if code := moderate(t, owner, "unban", "mallory", "unban_ack"); code != "" {
		t.Fatalf("unban: %s", code)
	}
	if r := join(1, inv, malloryKey.Pubkey, "mallory").expect(t, 200, ""); r.body["memberId"] != malloryID || r.body["alreadyMember"] != true {
		t.Fatalf("join after unban: %s", r.raw)
	}
	if code := moderate(t, owner, "ban", "admin", "ban_ack"); code != "" {
		t.Fatalf("owner bans admin: %s", code)
	}
}
