package store

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/meshd/meshd"
)

// CLI tokens are stored as SHA-256 only (A.3-15, B.9.3).
func TestCLITokenStoredAsHash(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	token, err := f.s.CreateCLIToken(f.ctx, "user-1")
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(token); err != nil || len(raw) != 32 {
		t.Fatalf("token %q is not 32 bytes of base64url: %v", token, err)
	}
	var leaks int
	err = f.s.pool.QueryRow(f.ctx,
		"SELECT count(*) FROM mesh.cli_session c WHERE strpos(row_to_json(c)::text, $1) > 0", token).Scan(&leaks)
	if err != nil || leaks != 0 {
		t.Fatalf("raw token found in %d rows (%v)", leaks, err)
	}
	sum := sha256.Sum256([]byte(token))
	var stored string
	if err := f.s.pool.QueryRow(f.ctx, "SELECT token_hash FROM mesh.cli_session WHERE user_id = 'user-1'").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != hex.EncodeToString(sum[:]) {
		t.Fatalf("token_hash = %s, want lowercase hex sha256", stored)
	}
	user, session, err := f.s.LookupCLIToken(f.ctx, token)
	if err != nil || user != "user-1" || len(session) != 32 {
		t.Fatalf("LookupCLIToken = %q %q %v", user, session, err)
	}
	var seen bool
	_ = f.s.pool.QueryRow(f.ctx, "SELECT last_seen_at IS NOT NULL FROM mesh.cli_session WHERE id = $1", session).Scan(&seen)
	if !seen {
		t.Fatal("last_seen_at not touched")
	}
	if _, err := f.s.CreateCLIToken(f.ctx, ""); err == nil {
		t.Fatal("token minted for an empty user")
	}
}

// Tokens that must not authenticate, each by the reason it is refused.
func TestLookupCLITokenRejects(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	mint := func() string {
		tok, err := f.s.CreateCLIToken(f.ctx, "user-2")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	revoked := mint()
	if found, err := f.s.RevokeCLIToken(f.ctx, revoked); !found || err != nil {
		t.Fatalf("RevokeCLIToken = %v, %v", found, err)
	}
	expired := mint()
	f.exec("UPDATE mesh.cli_session SET expires_at = now() - interval '1 second' WHERE token_hash = $1", tokenHash(expired))
	valid := mint()
	tests := []struct {
		name  string
		token string
	}{
		{"empty", ""},
		{"unknown", "not-a-token"},
		{"hash_instead_of_token", tokenHash(valid)},
		{"revoked", revoked},
		{"expired", expired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.s.LookupCLIToken(f.ctx, tt.token)
			wantErr(t, err, meshd.ErrNotFound)
		})
	}
	// The valid token still works after the rejections.
	if user, _, err := f.s.LookupCLIToken(f.ctx, valid); err != nil || user != "user-2" {
		t.Fatalf("valid token: %q, %v", user, err)
	}
	if found, err := f.s.RevokeCLIToken(f.ctx, "unknown"); found || err != nil {
		t.Fatalf("revoke unknown = %v, %v", found, err)
	}
}

// An operator lists, expires and revokes tokens without ever seeing a hash.
func TestCLITokenTTLListRevoke(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	forever, foreverID, err := f.s.CreateCLITokenTTL(f.ctx, "user-3", 0)
	if err != nil {
		t.Fatal(err)
	}
	hour, hourID, err := f.s.CreateCLITokenTTL(f.ctx, "user-3", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	short, shortID, err := f.s.CreateCLITokenTTL(f.ctx, "user-3", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := f.s.CreateCLITokenTTL(f.ctx, "user-4", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.s.CreateCLITokenTTL(f.ctx, "user-3", -time.Second); err == nil {
		t.Error("negative ttl accepted")
	}
	// (short may already have expired on a loaded machine: not looked up fresh.)
	for _, tok := range []string{forever, hour} {
		if user, _, err := f.s.LookupCLIToken(f.ctx, tok); err != nil || user != "user-3" {
			t.Fatalf("fresh token: %q %v", user, err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	_, _, err = f.s.LookupCLIToken(f.ctx, short)
	wantErr(t, err, meshd.ErrNotFound)

	list, err := f.s.ListCLITokens(f.ctx, "user-3", false)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(l []CLITokenInfo) (out []string) {
		for _, i := range l {
			out = append(out, i.ID)
		}
		sort.Strings(out)
		return out
	}
	if got, want := ids(list), sortedIDs(foreverID, hourID); !slices.Equal(got, want) {
		t.Fatalf("active tokens %v, want %v (expired one hidden)", got, want)
	}
	for _, i := range list {
		switch i.ID {
		case foreverID:
			if i.ExpiresAt != nil || !i.Active || i.LastSeenAt == nil {
				t.Errorf("forever token %+v", i)
			}
		case hourID:
			if i.ExpiresAt == nil || time.Until(*i.ExpiresAt) < 59*time.Minute || time.Until(*i.ExpiresAt) > 61*time.Minute {
				t.Errorf("1h token expires at %v", i.ExpiresAt)
			}
		}
	}
	all, err := f.s.ListCLITokens(f.ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || ids(all)[0] == "" {
		t.Fatalf("all tokens: %+v", all)
	}
	for _, i := range all {
		if i.ID == shortID && i.Active {
			t.Error("expired token listed as active")
		}
	}

	if got, err := f.s.RevokeCLITokens(f.ctx, hourID, ""); err != nil || !slices.Equal(got, []string{hourID}) {
		t.Fatalf("revoke by id: %v %v", got, err)
	}
	_, _, err = f.s.LookupCLIToken(f.ctx, hour)
	wantErr(t, err, meshd.ErrNotFound)
	if got, err := f.s.RevokeCLITokens(f.ctx, hourID, ""); err != nil || len(got) != 0 {
		t.Fatalf("second revoke by id: %v %v", got, err)
	}
	// By user: the remaining active one and the expired one; user-4's stays.
	if got, err := f.s.RevokeCLITokens(f.ctx, "", "user-3"); err != nil || !slices.Equal(sortedIDs(got...), sortedIDs(foreverID, shortID)) {
		t.Fatalf("revoke by user: %v %v", got, err)
	}
	_, _, err = f.s.LookupCLIToken(f.ctx, forever)
	wantErr(t, err, meshd.ErrNotFound)
	if user, _, err := f.s.LookupCLIToken(f.ctx, other); err != nil || user != "user-4" {
		t.Fatalf("another user's token: %q %v", user, err)
	}
	if _, err := f.s.RevokeCLITokens(f.ctx, "", ""); err == nil {
		t.Error("revoke with neither id nor user accepted")
	}
}

func sortedIDs(ids ...string) []string {
	return slices.Sorted(slices.Values(ids))
}
