package wire

import (
	"slices"
	"testing"
)

// TestReasonTable pins every reason to docs/protocol.md B.1/B.2/B.3 with literal
// strings; the B.2/B.3 rows are normative.
func TestReasonTable(t *testing.T) {
	t.Parallel()
	const removed = `You've been removed from "Team X". Contact the mesh owner to rejoin.`
	tests := []struct {
		r         Reason
		code      string
		message   string
		close     int
		closeText string
		metric    string
		handshake bool
		terminal  bool
	}{
		// B.2
		{ReasonBadSessionPubkey, "bad_session_pubkey", "sessionPubkey must be 64 lowercase hex chars", 1008, "bad_session_pubkey", "bad_session_pubkey", true, true},
		{ReasonCapacity, "capacity", "mesh at connection capacity", 1008, "capacity", "capacity", true, false},
		{ReasonTimestampSkew, "timestamp_skew", "hello rejected: timestamp_skew", 1008, "timestamp_skew", "timestamp_skew", true, false},
		{ReasonMalformed, "malformed", "hello rejected: malformed", 1008, "malformed", "malformed", true, true},
		{ReasonBadSignature, "bad_signature", "hello rejected: bad_signature", 1008, "bad_signature", "bad_signature", true, true},
		{ReasonRevoked, "revoked", removed, 4002, "banned", "revoked", true, true},
		{ReasonUnauthorized, "unauthorized", "pubkey not found in mesh", 1008, "unauthorized", "unauthorized", true, true},
		// B.3
		{ReasonBadParentPubkey, "bad_parent_pubkey", "parentMemberPubkey must be 64 lowercase hex chars", 1008, "bad_parent_pubkey", "bad_parent_pubkey", true, true},
		{ReasonAttestationMismatch, "attestation_mismatch", "parentAttestation does not bind the claimed session+parent pubkeys", 1008, "attestation_mismatch", "attestation_mismatch", true, true},
		{ReasonAttestationMalformed, "malformed", "attestation rejected: malformed", 1008, "malformed", "attestation_malformed", true, true},
		{ReasonAttestationExpired, "expired", "attestation rejected: expired", 1008, "expired", "attestation_expired", true, false},
		{ReasonAttestationTTLTooLong, "ttl_too_long", "attestation rejected: ttl_too_long", 1008, "ttl_too_long", "attestation_ttl_too_long", true, true},
		{ReasonAttestationBadSignature, "bad_signature", "attestation rejected: bad_signature", 1008, "bad_signature", "attestation_bad_signature", true, true},
		{ReasonSessionTimestampSkew, "timestamp_skew", "session_hello rejected: timestamp_skew", 1008, "timestamp_skew", "session_timestamp_skew", true, false},
		{ReasonSessionMalformed, "malformed", "session_hello rejected: malformed", 1008, "malformed", "session_malformed", true, true},
		{ReasonSessionBadSignature, "bad_signature", "session_hello rejected: bad_signature", 1008, "bad_signature", "session_bad_signature", true, true},
		{ReasonParentUnauthorized, "unauthorized", "parent pubkey not found in mesh", 1008, "unauthorized", "unauthorized", true, true},
		{ReasonParentMemberIDMismatch, "parent_member_id_mismatch", "parentMemberId does not match parentMemberPubkey", 1008, "parent_member_id_mismatch", "parent_member_id_mismatch", true, true},
		// A.3-21, A.3-22
		{ReasonReplayed, "replayed", "hello rejected: replayed", 1008, "replayed", "replayed", true, false},
		{ReasonMemberCapacity, "capacity", "member at connection capacity", 1008, "capacity", "member_capacity", true, false},
		{ReasonHelloRateLimited, "rate_limited", "too many hellos for this member; retry later", 1013, "rate_limited", "rate_limited", true, false},
		// B.1 and A.3-9
		{ReasonHelloTimeout, "hello_timeout", "no hello received in time", 1008, "hello_timeout", "hello_timeout", true, false},
		{ReasonSessionReplaced, "session_replaced", "another connection took over this session", 1000, "session_replaced", "session_replaced", false, true},
		{ReasonShuttingDown, "shutting_down", "broker shutting down; reconnect", 1001, "shutting down", "shutting_down", false, false},
		{ReasonKicked, "kicked", "kicked by a mesh admin", 4001, "kicked", "kicked", false, true},
		{ReasonKickedStale, "kicked", "kicked by a mesh admin (stale)", 4001, "kicked_stale", "kicked_stale", false, true},
		{ReasonDisconnected, "disconnected", "disconnected by a mesh admin; reconnect", 1000, "disconnected", "disconnected", false, false},
		{ReasonDisconnectedStale, "disconnected", "disconnected by a mesh admin (stale); reconnect", 1000, "disconnected_stale", "disconnected_stale", false, false},
		{ReasonBanned, "banned", removed, 4002, "banned", "banned", false, true},
		{ReasonSlowConsumer, "slow_consumer", "connection too slow to keep up; reconnect", 1013, "slow_consumer", "slow_consumer", false, false},
		{ReasonTooLarge, "too_large", "frame exceeds MAX_MESSAGE_BYTES", 1009, "", "too_large", false, false},
		// A.3-23
		{ReasonMeshArchived, "mesh_archived", "this mesh was deleted by its owner", 4003, "mesh_archived", "mesh_archived", false, true},
	}
	if len(tests) != len(AllReasons()) {
		t.Fatalf("table has %d rows, AllReasons %d", len(tests), len(AllReasons()))
	}
	for _, tt := range tests {
		t.Run(tt.r.String(), func(t *testing.T) {
			r := tt.r
			if r.Code() != tt.code || r.Message("Team X") != tt.message || r.CloseCode() != tt.close ||
				r.CloseText() != tt.closeText || r.Metric() != tt.metric || r.Handshake() != tt.handshake ||
				r.Terminal() != tt.terminal {
				t.Fatalf("got {%q %q %d %q %q %v %v}", r.Code(), r.Message("Team X"), r.CloseCode(),
					r.CloseText(), r.Metric(), r.Handshake(), r.Terminal())
			}
			if f := r.ErrorFrame("Team X"); f.Type != "error" || f.Code != tt.code || f.Message != tt.message {
				t.Fatalf("ErrorFrame = %+v", f)
			}
		})
	}
}

func TestReasonsDistinct(t *testing.T) {
	t.Parallel()
	names := map[string]Reason{}
	for _, r := range AllReasons() {
		if prev, dup := names[r.String()]; dup {
			t.Errorf("%d and %d share the name %q", prev, r, r)
		}
		names[r.String()] = r
		if r.Code() == "" || r.Metric() == "" || r.CloseCode() == 0 {
			t.Errorf("%v has an empty mapping", r)
		}
	}
	if OK.String() != "ok" || OK.Code() != "" || OK.CloseCode() != 0 {
		t.Errorf("OK maps to something: %q %q %d", OK, OK.Code(), OK.CloseCode())
	}
	if got := Reason(999).String(); got != "Reason(999)" || Reason(-1).Code() != "" {
		t.Errorf("out of range reason: %q", got)
	}
}

// TestFromClose checks that a client reading a close frame back gets a
// reason with the same close frame and the same reconnect policy.
func TestFromClose(t *testing.T) {
	t.Parallel()
	for _, r := range AllReasons() {
		got, ok := FromClose(r.CloseCode(), r.CloseText())
		if !ok || got.CloseCode() != r.CloseCode() || got.CloseText() != r.CloseText() {
			t.Errorf("FromClose(%v) = %v, %v", r, got, ok)
		}
		if got.Terminal() != r.Terminal() {
			t.Errorf("%v (terminal %v) shares its close frame with %v (terminal %v)", r, r.Terminal(), got, got.Terminal())
		}
	}
	if r, ok := FromClose(1006, ""); ok {
		t.Errorf("FromClose(1006) = %v", r)
	}
}

func TestMetricLabelsRoundTrip(t *testing.T) {
	t.Parallel()
	hs, others := MetricLabels(true), MetricLabels(false)
	if len(hs) == 0 || len(others) == 0 {
		t.Fatal("no labels")
	}
	for _, l := range append(slices.Clone(hs), others...) {
		r, ok := FromMetric(l)
		if !ok || r.Metric() != l {
			t.Errorf("FromMetric(%q) = %v, %v", l, r, ok)
		}
		if slices.Contains(hs, l) && slices.Contains(others, l) {
			t.Errorf("label %q is both a handshake and a close label", l)
		}
	}
	if _, ok := FromMetric("no_such_reason"); ok {
		t.Error("FromMetric accepted an unknown label")
	}
}
