package wire

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

const testRootKey = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA" // base64url of bytes 1..32

func signedInvite(t *testing.T) *InvitePayload {
	t.Helper()
	p := &InvitePayload{
		V: 1, MeshID: "mesh-x", MeshSlug: "team-x", BrokerURL: "wss://ic.claudemesh.com/ws",
		ExpiresAt: 1718064000, MeshRootKey: testRootKey, Role: "member",
	}
	SignInvite(p, seedKey(0x01))
	return p
}

func TestInviteSignature(t *testing.T) {
	t.Parallel()
	p := signedInvite(t)
	if p.OwnerPubkey != parentPubHex {
		t.Fatalf("owner pubkey = %s", p.OwnerPubkey)
	}
	want := "1|mesh-x|team-x|wss://ic.claudemesh.com/ws|1718064000|" + testRootKey + "|member|" + parentPubHex
	if got := InviteCanonical(p); got != want {
		t.Fatalf("canonical = %q, want %q", got, want)
	}
	if p.Signature != Sign(seedKey(0x01), want) {
		t.Fatal("signature is not over the canonical string")
	}
	if !VerifyInvite(p) {
		t.Fatal("valid invite does not verify")
	}
}

// TestVerifyInviteTampered: changing any signed field, or the signature,
// breaks verification (upstream: tampered mesh_slug → invite_bad_signature).
func TestVerifyInviteTampered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(p *InvitePayload)
	}{
		{"v", func(p *InvitePayload) { p.V = 2 }},
		{"mesh_id", func(p *InvitePayload) { p.MeshID = "mesh-y" }},
		{"mesh_slug", func(p *InvitePayload) { p.MeshSlug = "team-y" }},
		{"broker_url", func(p *InvitePayload) { p.BrokerURL = "wss://evil.example/ws" }},
		{"expires_at", func(p *InvitePayload) { p.ExpiresAt++ }},
		{"mesh_root_key", func(p *InvitePayload) { p.MeshRootKey = strings.Repeat("A", 43) }},
		{"role", func(p *InvitePayload) { p.Role = "admin" }},
		{"owner_pubkey", func(p *InvitePayload) { p.OwnerPubkey = sessionPubHex }},
		{"signature", func(p *InvitePayload) { p.Signature = "00" + p.Signature[2:] }},
		{"signature_short", func(p *InvitePayload) { p.Signature = p.Signature[:64] }},
		{"pipe_shift", func(p *InvitePayload) { p.MeshID, p.MeshSlug = "mesh-x|team-x", "" }},
		{"non_owner_key", func(p *InvitePayload) { SignInvite(p, seedKey(0x02)); p.OwnerPubkey = parentPubHex }},
	}
	for _, tt := range tests {
		t.Run("invite_bad_signature_"+tt.name, func(t *testing.T) {
			p := signedInvite(t)
			tt.tamper(p)
			if VerifyInvite(p) {
				t.Fatal("tampered invite verifies")
			}
		})
	}
}

func TestInviteTokenRoundTrip(t *testing.T) {
	t.Parallel()
	p := signedInvite(t)
	tok, err := EncodeInviteToken(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(tok, "=+/") {
		t.Fatalf("token %q is not unpadded base64url", tok)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	want := `{"v":1,"mesh_id":"mesh-x","mesh_slug":"team-x","broker_url":"wss://ic.claudemesh.com/ws","expires_at":1718064000,"mesh_root_key":"` +
		testRootKey + `","role":"member","owner_pubkey":"` + parentPubHex + `","signature":"` + p.Signature + `"}`
	if string(raw) != want {
		t.Fatalf("token JSON = %s, want %s", raw, want)
	}
	for _, variant := range []string{tok, tok + "==", " " + tok} {
		got, err := DecodeInviteToken(strings.TrimSpace(variant))
		if err != nil {
			t.Fatalf("decode %q: %v", variant, err)
		}
		if *got != *p || !VerifyInvite(got) {
			t.Fatalf("round trip = %+v, want %+v", got, p)
		}
	}
}

func TestDecodeInviteTokenRejects(t *testing.T) {
	t.Parallel()
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name, tok, want string
	}{
		{"empty", "", "not a JSON object"},
		{"not_base64", "!!!not-base64!!!", "base64url"},
		{"standard_base64_chars", "ab+/", "base64url"},
		{"not_json", enc("hello"), "not a JSON object"},
		{"array", enc(`[1]`), "not a JSON object"},
		{"null", enc(`null`), "not a JSON object"},
		{"truncated_json", enc(`{"v":1,"mesh_id":"m"`), "json"},
		{"wrong_type", enc(`{"v":"1"}`), "json"},
		{"version_missing", enc(`{"mesh_id":"m","broker_url":"b"}`), "unsupported version 0"},
		{"version_2", enc(`{"v":2,"mesh_id":"m","broker_url":"b"}`), "unsupported version 2"},
		{"missing_mesh_id", enc(`{"v":1,"broker_url":"b"}`), "missing mesh_id"},
		{"missing_broker_url", enc(`{"v":1,"mesh_id":"m"}`), "missing broker_url"},
		{"oversized", strings.Repeat("A", maxInviteTokenLen+1), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := DecodeInviteToken(tt.tok)
			if !errors.Is(err, ErrInviteToken) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %+v, %v; want ErrInviteToken mentioning %q", p, err, tt.want)
			}
		})
	}
}

func TestParseInviteLink(t *testing.T) {
	t.Parallel()
	const tok = "eyJ2IjoxfQ"
	tests := []struct {
		name, in         string
		wantTok, wantCod string
		wantErr          bool
	}{
		{"ic_scheme", "ic://join/" + tok, tok, "", false},
		{"https_join", "https://claudemesh.com/join/" + tok, tok, "", false},
		{"http_join_port", "http://localhost:3000/join/" + tok, tok, "", false},
		{"https_locale", "https://claudemesh.com/es/join/" + tok, tok, "", false},
		{"https_trailing_slash_query", "https://claudemesh.com/join/" + tok + "/?ref=x#y", tok, "", false},
		{"short_code", "https://claudemesh.com/i/ABCD2345", "", "ABCD2345", false},
		{"bare_token", tok, tok, "", false},
		{"bare_token_spaces", "  " + tok + "\n", tok, "", false},
		{"bare_token_padded", tok + "==", tok + "==", "", false},
		{"invite_link_empty", "", "", "", true},
		{"invite_link_bad_token_chars", "not a token", "", "", true},
		{"invite_link_long_locale", "https://claudemesh.com/esp/join/" + tok, "", "", true},
		{"invite_link_no_token", "https://claudemesh.com/join/", "", "", true},
		{"invite_link_other_path", "https://claudemesh.com/dashboard", "", "", true},
		{"invite_link_bad_code", "https://claudemesh.com/i/AB-CD", "", "", true},
		{"invite_link_other_scheme", "ftp://claudemesh.com/join/" + tok, "", "", true},
		{"invite_link_ic_other_host", "ic://leave/" + tok, "", "", true},
		{"invite_link_ic_extra_segment", "ic://join/a/" + tok, "", "", true},
		{"invite_link_no_host", "https:///join/" + tok, "", "", true},
		{"invite_link_unparseable", "https://%zz/join/" + tok, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, code, err := ParseInviteLink(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInviteLink) {
					t.Fatalf("got %q %q %v, want ErrInviteLink", tok, code, err)
				}
				return
			}
			if err != nil || tok != tt.wantTok || code != tt.wantCod {
				t.Fatalf("got %q %q %v, want %q %q", tok, code, err, tt.wantTok, tt.wantCod)
			}
		})
	}
}

func TestNewInviteCode(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		c := NewInviteCode()
		if len(c) != 8 || strings.Trim(c, inviteCodeAlphabet) != "" {
			t.Fatalf("code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 99 {
		t.Fatalf("only %d distinct codes in 100", len(seen))
	}
}

func FuzzDecodeInviteToken(f *testing.F) {
	p := &InvitePayload{V: 1, MeshID: "mesh-x", MeshSlug: "team-x", BrokerURL: "wss://ic.claudemesh.com/ws",
		ExpiresAt: 1718064000, MeshRootKey: testRootKey, Role: "member"}
	SignInvite(p, seedKey(0x01))
	tok, _ := EncodeInviteToken(p)
	f.Add(tok)
	f.Add(tok[:len(tok)/2])
	f.Add("")
	f.Add("!!!")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,"mesh_id":"m","broker_url":"b","expires_at":1e99}`)))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := DecodeInviteToken(s)
		if err != nil {
			if !errors.Is(err, ErrInviteToken) || p != nil {
				t.Fatalf("error %v without ErrInviteToken, or with a payload", err)
			}
			return
		}
		VerifyInvite(p)
		tok, err := EncodeInviteToken(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeInviteToken(tok)
		if err != nil || *back != *p {
			t.Fatalf("re-encoded token does not round trip: %+v, %v", back, err)
		}
	})
}

func FuzzParseInviteLink(f *testing.F) {
	for _, s := range []string{"ic://join/abc", "https://h/join/abc", "https://h/es/join/abc", "https://h/i/ABCD2345", "abc", "https://%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, code, err := ParseInviteLink(s)
		switch {
		case err != nil:
			if !errors.Is(err, ErrInviteLink) || tok != "" || code != "" {
				t.Fatalf("%q: %q %q %v", s, tok, code, err)
			}
		case (tok == "") == (code == ""):
			t.Fatalf("%q: want exactly one of token and code, got %q %q", s, tok, code)
		}
	})
}
