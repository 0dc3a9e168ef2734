package wire

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

var vectorNow = time.UnixMilli(vectorTS)

// signedHello is a hello by the 0x01 member at ts, valid at vectorNow when
// ts is vectorTS.
func signedHello(ts float64) *Hello {
	k := seedKey(0x01)
	return &Hello{
		Type: TypeHello, MeshID: "mesh-x", MemberID: "member-y", Pubkey: pubHex(k),
		Timestamp: json.RawMessage(FormatJSNumber(ts)),
		Signature: Sign(k, HelloCanonical("mesh-x", "member-y", pubHex(k), ts)),
		PeerInfo:  PeerInfo{SessionID: "s1"},
	}
}

func TestCheckSessionPubkeyShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		s        string
		required bool
		want     Reason
	}{
		{"bad_session_pubkey_empty_required", "", true, ReasonBadSessionPubkey},
		{"bad_session_pubkey_uppercase", strings.ToUpper(sessionPubHex), false, ReasonBadSessionPubkey},
		{"bad_session_pubkey_uppercase_required", strings.ToUpper(sessionPubHex), true, ReasonBadSessionPubkey},
		{"bad_session_pubkey_short", sessionPubHex[:63], false, ReasonBadSessionPubkey},
		{"bad_session_pubkey_non_hex", "g" + sessionPubHex[1:], true, ReasonBadSessionPubkey},
		{"ok_empty_optional", "", false, OK},
		{"ok_lowercase", sessionPubHex, true, OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckSessionPubkeyShape(tt.s, tt.required); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCheckHelloSignature covers upstream's hello-signature.test.ts (the
// first seven rows) and the edges of B.2 step 3.
func TestCheckHelloSignature(t *testing.T) {
	t.Parallel()
	other := seedKey(0x03)
	tests := []struct {
		name   string
		mutate func(h *Hello)
		want   Reason
	}{
		{"bad_signature_other_key", func(h *Hello) {
			h.Signature = Sign(other, HelloCanonical(h.MeshID, h.MemberID, h.Pubkey, vectorTS))
		}, ReasonBadSignature},
		{"timestamp_skew_61s_old", func(h *Hello) { *h = *signedHello(vectorTS - 61000) }, ReasonTimestampSkew},
		{"timestamp_skew_61s_future", func(h *Hello) { *h = *signedHello(vectorTS + 61000) }, ReasonTimestampSkew},
		{"bad_signature_other_mesh", func(h *Hello) { h.MeshID = "mesh-z" }, ReasonBadSignature},
		{"malformed_pubkey_not_hex", func(h *Hello) { h.Pubkey = "not-hex" }, ReasonMalformed},
		{"malformed_signature_abc123", func(h *Hello) { h.Signature = "abc123" }, ReasonMalformed},

		{"timestamp_skew_60001ms_old", func(h *Hello) { *h = *signedHello(vectorTS - 60001) }, ReasonTimestampSkew},
		{"timestamp_skew_string", func(h *Hello) { h.Timestamp = json.RawMessage(`"1717459200000"`) }, ReasonTimestampSkew},
		{"timestamp_skew_missing", func(h *Hello) { h.Timestamp = nil }, ReasonTimestampSkew},
		{"timestamp_skew_null", func(h *Hello) { h.Timestamp = json.RawMessage(`null`) }, ReasonTimestampSkew},
		{"timestamp_skew_infinite", func(h *Hello) { h.Timestamp = json.RawMessage(`1e400`) }, ReasonTimestampSkew},
		{"timestamp_skew_before_malformed", func(h *Hello) {
			h.Timestamp = json.RawMessage(`true`)
			h.Pubkey = "not-hex"
		}, ReasonTimestampSkew},
		{"malformed_short_signature", func(h *Hello) { h.Signature = h.Signature[:126] }, ReasonMalformed},
		{"malformed_pubkey_63", func(h *Hello) { h.Pubkey = h.Pubkey[:63] }, ReasonMalformed},
		{"bad_signature_other_member_id", func(h *Hello) { h.MemberID = "member-z" }, ReasonBadSignature},
		{"bad_signature_timestamp_not_signed", func(h *Hello) { h.Timestamp = json.RawMessage(`1717459200001`) }, ReasonBadSignature},

		{"ok", func(h *Hello) {}, OK},
		{"ok_60000ms_old", func(h *Hello) { *h = *signedHello(vectorTS - 60000) }, OK},
		{"ok_60000ms_future", func(h *Hello) { *h = *signedHello(vectorTS + 60000) }, OK},
		{"ok_uppercase_signature", func(h *Hello) { h.Signature = strings.ToUpper(h.Signature) }, OK},
		{"ok_uppercase_pubkey_signed_uppercase", func(h *Hello) {
			// 3b is case-insensitive and the canonical uses the pubkey as
			// sent; step 4's exact lookup is the broker's business.
			h.Pubkey = strings.ToUpper(h.Pubkey)
			h.Signature = Sign(seedKey(0x01), HelloCanonical(h.MeshID, h.MemberID, h.Pubkey, vectorTS))
		}, OK},
		{"ok_timestamp_exponent_form", func(h *Hello) { h.Timestamp = json.RawMessage(`1.7174592e12`) }, OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := signedHello(vectorTS)
			tt.mutate(h)
			if got := CheckHelloSignature(h, vectorNow); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// session builds a session_hello by the 0x02 session key vouched by the
// 0x01 parent, attested until exp and stamped ts.
func session(exp, ts float64) *SessionHello {
	parent, sess := seedKey(0x01), seedKey(0x02)
	att := Attestation{
		SessionPubkey: pubHex(sess), ParentMemberPubkey: pubHex(parent),
		ExpiresAt: json.RawMessage(FormatJSNumber(exp)),
		Signature: Sign(parent, AttestationCanonical(pubHex(parent), pubHex(sess), exp)),
	}
	raw, _ := json.Marshal(att)
	return &SessionHello{
		Type: TypeSessionHello, MeshID: "mesh-x", ParentMemberPubkey: pubHex(parent),
		SessionPubkey: pubHex(sess), ParentAttestation: raw, PeerInfo: PeerInfo{SessionID: "s1"},
		Timestamp: json.RawMessage(FormatJSNumber(ts)),
		Signature: Sign(sess, SessionHelloCanonical("mesh-x", pubHex(parent), pubHex(sess), ts)),
	}
}

func TestParseAttestation(t *testing.T) {
	t.Parallel()
	const hour = 3600 * 1000
	tests := []struct {
		name   string
		mutate func(sh *SessionHello)
		want   Reason
	}{
		{"bad_session_pubkey_uppercase", func(sh *SessionHello) { sh.SessionPubkey = strings.ToUpper(sh.SessionPubkey) }, ReasonBadSessionPubkey},
		{"bad_session_pubkey_missing", func(sh *SessionHello) { sh.SessionPubkey = "" }, ReasonBadSessionPubkey},
		{"bad_parent_pubkey_uppercase", func(sh *SessionHello) { sh.ParentMemberPubkey = strings.ToUpper(sh.ParentMemberPubkey) }, ReasonBadParentPubkey},
		{"bad_parent_pubkey_not_hex", func(sh *SessionHello) { sh.ParentMemberPubkey = "not-hex" }, ReasonBadParentPubkey},
		{"bad_session_pubkey_before_parent", func(sh *SessionHello) {
			sh.SessionPubkey, sh.ParentMemberPubkey = "x", "y"
		}, ReasonBadSessionPubkey},
		{"attestation_mismatch_missing", func(sh *SessionHello) { sh.ParentAttestation = nil }, ReasonAttestationMismatch},
		{"attestation_mismatch_null", func(sh *SessionHello) { sh.ParentAttestation = json.RawMessage(`null`) }, ReasonAttestationMismatch},
		{"attestation_mismatch_string", func(sh *SessionHello) { sh.ParentAttestation = json.RawMessage(`"x"`) }, ReasonAttestationMismatch},
		{"attestation_mismatch_array", func(sh *SessionHello) { sh.ParentAttestation = json.RawMessage(`[]`) }, ReasonAttestationMismatch},
		{"attestation_mismatch_other_session", func(sh *SessionHello) {
			// A valid attestation, but for another session key.
			other := seedKey(0x04)
			sh.SessionPubkey = pubHex(other)
		}, ReasonAttestationMismatch},
		{"attestation_mismatch_other_parent", func(sh *SessionHello) { sh.ParentMemberPubkey = pubHex(seedKey(0x05)) }, ReasonAttestationMismatch},
		{"attestation_mismatch_key_case", func(sh *SessionHello) {
			sh.ParentAttestation = json.RawMessage(strings.Replace(string(sh.ParentAttestation), `"sessionPubkey"`, `"SessionPubkey"`, 1))
		}, ReasonAttestationMismatch},
		{"attestation_mismatch_number_pubkey", func(sh *SessionHello) {
			sh.ParentAttestation = json.RawMessage(`{"sessionPubkey":1,"parentMemberPubkey":"` + sh.ParentMemberPubkey + `"}`)
		}, ReasonAttestationMismatch},
		{"ok", func(sh *SessionHello) {}, OK},
		{"ok_signature_not_a_string", func(sh *SessionHello) {
			sh.ParentAttestation = json.RawMessage(`{"sessionPubkey":"` + sh.SessionPubkey + `","parentMemberPubkey":"` + sh.ParentMemberPubkey + `","expiresAt":1,"signature":7}`)
		}, OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sh := session(vectorTS+hour, vectorTS)
			tt.mutate(sh)
			a, got := ParseAttestation(sh)
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			if (a != nil) != (got == OK) {
				t.Fatalf("attestation %v with reason %v", a, got)
			}
		})
	}
}

// TestVerifyAttestation covers the attestation rows of upstream's
// session-hello-signature.test.ts and the edges of B.3 step 5.
func TestVerifyAttestation(t *testing.T) {
	t.Parallel()
	const hour = 3600 * 1000
	const day = 24 * hour
	parent := seedKey(0x01)
	tests := []struct {
		name string
		exp  float64
		edit func(a *Attestation)
		want Reason
	}{
		{"expired_1s_ago", vectorTS - 1000, nil, ReasonAttestationExpired},
		{"expired_at_now", vectorTS, nil, ReasonAttestationExpired},
		{"ttl_too_long_24h_60s", vectorTS + day + 60000, nil, ReasonAttestationTTLTooLong},
		{"ttl_too_long_24h_1ms", vectorTS + day + 1, nil, ReasonAttestationTTLTooLong},
		{"bad_signature_other_key", vectorTS + hour, func(a *Attestation) {
			a.Signature = Sign(seedKey(0x03), AttestationCanonical(a.ParentMemberPubkey, a.SessionPubkey, vectorTS+hour))
		}, ReasonAttestationBadSignature},
		{"bad_signature_other_session_at_verify", vectorTS + hour, func(a *Attestation) {
			a.SessionPubkey = pubHex(seedKey(0x04))
		}, ReasonAttestationBadSignature},
		{"bad_signature_other_expiry", vectorTS + hour, func(a *Attestation) {
			a.ExpiresAt = json.RawMessage(FormatJSNumber(vectorTS + 2*hour))
		}, ReasonAttestationBadSignature},
		{"malformed_parent_not_hex", vectorTS + hour, func(a *Attestation) { a.ParentMemberPubkey = "not-hex" }, ReasonAttestationMalformed},
		{"malformed_short_signature", vectorTS + hour, func(a *Attestation) { a.Signature = a.Signature[:126] }, ReasonAttestationMalformed},
		{"malformed_empty_signature", vectorTS + hour, func(a *Attestation) { a.Signature = "" }, ReasonAttestationMalformed},
		{"malformed_expires_string", vectorTS + hour, func(a *Attestation) { a.ExpiresAt = json.RawMessage(`"1717462800000"`) }, ReasonAttestationMalformed},
		{"malformed_expires_missing", vectorTS + hour, func(a *Attestation) { a.ExpiresAt = nil }, ReasonAttestationMalformed},
		{"malformed_expires_infinite", vectorTS + hour, func(a *Attestation) { a.ExpiresAt = json.RawMessage(`1e999`) }, ReasonAttestationMalformed},
		{"expired_before_shape", vectorTS - 1000, func(a *Attestation) {
			a.SessionPubkey, a.ParentMemberPubkey, a.Signature = "garbage", "garbage", "garbage"
		}, ReasonAttestationExpired},
		{"ttl_too_long_before_shape", vectorTS + 2*day, func(a *Attestation) { a.Signature = "garbage" }, ReasonAttestationTTLTooLong},
		{"ok_1h_ttl", vectorTS + hour, nil, OK},
		{"ok_exactly_24h", vectorTS + day, nil, OK},
		{"attestation_bad_signature_uppercase_parent", vectorTS + hour, func(a *Attestation) {
			// 5d accepts either case, but the pubkey is signed as sent.
			a.ParentMemberPubkey = strings.ToUpper(a.ParentMemberPubkey)
		}, ReasonAttestationBadSignature},
		{"ok_uppercase_signature", vectorTS + hour, func(a *Attestation) { a.Signature = strings.ToUpper(a.Signature) }, OK},
		{"ok_vector", vectorExpires, nil, OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Attestation{
				SessionPubkey: sessionPubHex, ParentMemberPubkey: parentPubHex,
				ExpiresAt: json.RawMessage(FormatJSNumber(tt.exp)),
				Signature: Sign(parent, AttestationCanonical(parentPubHex, sessionPubHex, tt.exp)),
			}
			if tt.edit != nil {
				tt.edit(a)
			}
			if got := VerifyAttestation(a, vectorNow); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	a := &Attestation{SessionPubkey: sessionPubHex, ParentMemberPubkey: parentPubHex,
		ExpiresAt: json.RawMessage(`1717502400000`), Signature: attestSigHex}
	if got := VerifyAttestation(a, vectorNow); got != OK {
		t.Fatalf("B.3 vector attestation: %v", got)
	}
}

// TestCheckSessionHelloSignature covers the session-hello rows of upstream's
// session-hello-signature.test.ts and the edges of B.3 step 6.
func TestCheckSessionHelloSignature(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(sh *SessionHello)
		want   Reason
	}{
		{"session_bad_signature_signed_by_parent", func(sh *SessionHello) {
			sh.Signature = Sign(seedKey(0x01), SessionHelloCanonical(sh.MeshID, sh.ParentMemberPubkey, sh.SessionPubkey, vectorTS))
		}, ReasonSessionBadSignature},
		{"session_timestamp_skew_61s", func(sh *SessionHello) { *sh = *session(vectorTS+3600000, vectorTS-61000) }, ReasonSessionTimestampSkew},
		{"session_timestamp_skew_60001ms_future", func(sh *SessionHello) { *sh = *session(vectorTS+3600000, vectorTS+60001) }, ReasonSessionTimestampSkew},
		{"session_timestamp_skew_string", func(sh *SessionHello) { sh.Timestamp = json.RawMessage(`"now"`) }, ReasonSessionTimestampSkew},
		{"session_timestamp_skew_missing", func(sh *SessionHello) { sh.Timestamp = nil }, ReasonSessionTimestampSkew},
		{"session_bad_signature_other_mesh", func(sh *SessionHello) { sh.MeshID = "mesh-z" }, ReasonSessionBadSignature},
		{"session_malformed_short_signature", func(sh *SessionHello) { sh.Signature = sh.Signature[:100] }, ReasonSessionMalformed},
		{"session_malformed_pubkey", func(sh *SessionHello) { sh.SessionPubkey = "not-hex" }, ReasonSessionMalformed},
		{"ok", func(sh *SessionHello) {}, OK},
		{"ok_60000ms_old", func(sh *SessionHello) { *sh = *session(vectorTS+3600000, vectorTS-60000) }, OK},
		{"ok_vector", func(sh *SessionHello) { sh.Signature = sessSigHex }, OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sh := session(vectorTS+3600000, vectorTS)
			tt.mutate(sh)
			if got := CheckSessionHelloSignature(sh, vectorNow); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSessionHelloSteps runs the pure B.3 steps in the broker's order on
// wire JSON: bad frames first, then a valid one.
func TestSessionHelloSteps(t *testing.T) {
	t.Parallel()
	valid, _ := json.Marshal(session(vectorExpires, vectorTS))
	expired, _ := json.Marshal(session(vectorTS-1, vectorTS))
	replayed, _ := json.Marshal(session(vectorExpires, vectorTS-120000))
	tests := []struct {
		name  string
		frame string
		want  Reason
	}{
		{"attestation_mismatch_no_attestation", strings.Replace(string(valid), `"parentAttestation"`, `"x"`, 1), ReasonAttestationMismatch},
		{"attestation_expired", string(expired), ReasonAttestationExpired},
		{"session_timestamp_skew_replayed", string(replayed), ReasonSessionTimestampSkew},
		{"ok", string(valid), OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sessionHelloSteps([]byte(tt.frame), vectorNow); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// sessionHelloSteps is B.3 steps 1–6 without the broker's capacity and
// database steps.
func sessionHelloSteps(frame []byte, now time.Time) Reason {
	var sh SessionHello
	if err := json.Unmarshal(frame, &sh); err != nil {
		return ReasonSessionMalformed
	}
	a, r := ParseAttestation(&sh)
	if r != OK {
		return r
	}
	if r := VerifyAttestation(a, now); r != OK {
		return r
	}
	return CheckSessionHelloSignature(&sh, now)
}

func FuzzCheckHelloSignature(f *testing.F) {
	for _, ts := range []float64{vectorTS, vectorTS - 60000, vectorTS + 61000} {
		b, _ := json.Marshal(signedHello(ts))
		f.Add(b)
	}
	f.Add([]byte(`{"type":"hello","timestamp":"x","pubkey":"` + parentPubHex + `"}`))
	f.Add([]byte(`{"timestamp":1717459200000,"pubkey":"` + strings.Repeat("0", 64) + `","signature":"` + strings.Repeat("0", 128) + `"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Hello
		if json.Unmarshal(data, &h) != nil {
			return
		}
		r := CheckHelloSignature(&h, vectorNow)
		if r == OK && !VerifyHex(h.Pubkey, h.Signature, HelloCanonical(h.MeshID, h.MemberID, h.Pubkey, mustTS(t, h.Timestamp))) {
			t.Fatalf("accepted a hello whose signature does not verify: %s", data)
		}
		if r != OK && r != ReasonTimestampSkew && r != ReasonMalformed && r != ReasonBadSignature {
			t.Fatalf("unexpected reason %v", r)
		}
	})
}

func FuzzSessionHello(f *testing.F) {
	for _, sh := range []*SessionHello{session(vectorExpires, vectorTS), session(vectorTS-1, vectorTS)} {
		b, _ := json.Marshal(sh)
		f.Add(b)
	}
	f.Add([]byte(`{"sessionPubkey":"` + sessionPubHex + `","parentMemberPubkey":"` + parentPubHex + `","parentAttestation":{"sessionPubkey":"` + sessionPubHex + `","parentMemberPubkey":"` + parentPubHex + `","expiresAt":"soon"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := sessionHelloSteps(data, vectorNow)
		if r != OK && !r.Handshake() {
			t.Fatalf("non-handshake reason %v", r)
		}
	})
}

func mustTS(t *testing.T, raw json.RawMessage) float64 {
	ts, ok := ParseJSTimestamp(raw)
	if !ok {
		t.Fatalf("accepted timestamp %s", raw)
	}
	return ts
}
