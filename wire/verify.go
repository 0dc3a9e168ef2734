package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"time"
)

// Handshake limits (docs/protocol.md B.3 constants).
const (
	// HelloSkew bounds |now - timestamp| of a hello or session_hello so a
	// captured hello cannot be replayed later; exactly HelloSkew passes.
	HelloSkew = 60 * time.Second
	// MaxAttestationTTL bounds how far ahead a parent may vouch for a
	// session key, limiting how long a leaked session key stays usable;
	// exactly MaxAttestationTTL passes.
	MaxAttestationTTL = 24 * time.Hour
)

// The functions below are the pure steps of the B.2 and B.3 check tables.
// Each returns OK or the Reason of the first failing check, and they are
// split where the broker must run a capacity or database step in between:
//
//	hello:         CheckSessionPubkeyShape(h.SessionPubkey, false), capacity,
//	               CheckHelloSignature, member lookup (revoked/unauthorized)
//	session_hello: ParseAttestation, capacity, VerifyAttestation,
//	               CheckSessionHelloSignature, parent lookup, parentMemberId

// CheckSessionPubkeyShape is step 1 of B.2 (required false: empty is fine)
// and of B.3 (required true). Only lowercase hex passes: the session pubkey
// is a routing key compared as a string.
func CheckSessionPubkeyShape(s string, required bool) Reason {
	if s == "" && !required {
		return OK
	}
	if !isHex(s, 64, false) {
		return ReasonBadSessionPubkey
	}
	return OK
}

// CheckHelloSignature is step 3 of B.2: timestamp within HelloSkew of now
// (3a), hex shapes of either case (3b), then the signature by the claimed
// pubkey over HelloCanonical (3c). A timestamp that is missing, null, a
// string or not finite is reported as skew, as upstream does.
func CheckHelloSignature(h *Hello, now time.Time) Reason {
	ts, ok := ParseJSTimestamp(h.Timestamp)
	if !ok || !withinSkew(ts, now) {
		return ReasonTimestampSkew
	}
	if !isHex(h.Pubkey, 64, true) || !isHex(h.Signature, 128, true) {
		return ReasonMalformed
	}
	if !VerifyHex(h.Pubkey, h.Signature, HelloCanonical(h.MeshID, h.MemberID, h.Pubkey, ts)) {
		return ReasonBadSignature
	}
	return OK
}

// ParseAttestation runs steps 1–3 of B.3: the session pubkey and parent
// pubkey must be lowercase 64-hex, and parentAttestation must be an object
// whose sessionPubkey and parentMemberPubkey are strings equal to the
// top-level ones. The attestation's other fields are not judged here
// (VerifyAttestation does, after the capacity check): a non-number expiresAt
// or non-string signature surfaces there as attestation_malformed.
func ParseAttestation(sh *SessionHello) (*Attestation, Reason) {
	if r := CheckSessionPubkeyShape(sh.SessionPubkey, true); r != OK {
		return nil, r
	}
	if !isHex(sh.ParentMemberPubkey, 64, false) {
		return nil, ReasonBadParentPubkey
	}
	// Decoded field by field rather than into Attestation: a struct decode
	// would match keys case-insensitively and fail outright on a wrongly
	// typed signature, where upstream's JS reads exact keys.
	raw := bytes.TrimSpace(sh.ParentAttestation)
	var fields map[string]json.RawMessage
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &fields) != nil {
		return nil, ReasonAttestationMismatch
	}
	sessionPub, ok1 := jsonString(fields["sessionPubkey"])
	parentPub, ok2 := jsonString(fields["parentMemberPubkey"])
	if !ok1 || !ok2 || sessionPub != sh.SessionPubkey || parentPub != sh.ParentMemberPubkey {
		return nil, ReasonAttestationMismatch
	}
	sig, _ := jsonString(fields["signature"]) // "" fails the shape check in VerifyAttestation
	return &Attestation{
		SessionPubkey:      sessionPub,
		ParentMemberPubkey: parentPub,
		ExpiresAt:          fields["expiresAt"],
		Signature:          sig,
	}, OK
}

// VerifyAttestation is step 5 of B.3, in upstream's order: expiresAt finite
// (5a), in the future (5b), at most MaxAttestationTTL ahead (5c), then hex
// shapes (5d) and the parent's signature over AttestationCanonical (5e). The
// TTL checks come before the shapes, so an expired attestation with garbage
// hex reports expired.
func VerifyAttestation(a *Attestation, now time.Time) Reason {
	exp, ok := ParseJSTimestamp(a.ExpiresAt)
	if !ok {
		return ReasonAttestationMalformed
	}
	nowMS := float64(now.UnixMilli())
	if exp <= nowMS {
		return ReasonAttestationExpired
	}
	if exp > nowMS+float64(MaxAttestationTTL.Milliseconds()) {
		return ReasonAttestationTTLTooLong
	}
	if !isHex(a.SessionPubkey, 64, true) || !isHex(a.ParentMemberPubkey, 64, true) || !isHex(a.Signature, 128, true) {
		return ReasonAttestationMalformed
	}
	msg := AttestationCanonical(a.ParentMemberPubkey, a.SessionPubkey, exp)
	if !VerifyHex(a.ParentMemberPubkey, a.Signature, msg) {
		return ReasonAttestationBadSignature
	}
	return OK
}

// CheckSessionHelloSignature is step 6 of B.3: timestamp within HelloSkew
// (6a), hex shapes (6b), and the session key's signature over
// SessionHelloCanonical (6c). A signature by the parent key fails 6c: the
// attestation alone does not let its holder connect.
func CheckSessionHelloSignature(sh *SessionHello, now time.Time) Reason {
	ts, ok := ParseJSTimestamp(sh.Timestamp)
	if !ok || !withinSkew(ts, now) {
		return ReasonSessionTimestampSkew
	}
	if !isHex(sh.SessionPubkey, 64, true) || !isHex(sh.ParentMemberPubkey, 64, true) || !isHex(sh.Signature, 128, true) {
		return ReasonSessionMalformed
	}
	msg := SessionHelloCanonical(sh.MeshID, sh.ParentMemberPubkey, sh.SessionPubkey, ts)
	if !VerifyHex(sh.SessionPubkey, sh.Signature, msg) {
		return ReasonSessionBadSignature
	}
	return OK
}

// withinSkew reports |now - ts| <= HelloSkew in milliseconds.
func withinSkew(ts float64, now time.Time) bool {
	return math.Abs(float64(now.UnixMilli())-ts) <= float64(HelloSkew.Milliseconds())
}

// isHex reports whether s is exactly n hex digits; upper case is allowed
// only when anyCase is set.
func isHex(s string, n int, anyCase bool) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		case anyCase && 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// jsonString decodes raw when it is a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}
