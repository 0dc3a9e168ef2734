package wire

import (
	"slices"
	"strconv"
)

// Reason is why the broker rejects a handshake or closes a socket. Every
// reason is mapped, in the reasons table below and nowhere else, to its error
// frame, WebSocket close code and text, metric label and client policy.
// The zero value OK means "no rejection".
type Reason int

// Handshake rejections of docs/protocol.md B.2 (hello) and B.3 (session_hello),
// then the other closes of B.1. Reasons that share an error code but differ
// in message or metric (hello vs session_hello vs attestation) are distinct.
const (
	OK Reason = iota

	// Both handshakes.
	ReasonBadSessionPubkey // B.2-1, B.3-1
	ReasonCapacity         // B.2-2, B.3-4
	ReasonRevoked          // B.2-4a, B.3-7a

	// hello (B.2).
	ReasonTimestampSkew // 3a
	ReasonMalformed     // 3b
	ReasonBadSignature  // 3c
	ReasonUnauthorized  // 4b

	// session_hello (B.3).
	ReasonBadParentPubkey         // 2
	ReasonAttestationMismatch     // 3
	ReasonAttestationMalformed    // 5a, 5d
	ReasonAttestationExpired      // 5b
	ReasonAttestationTTLTooLong   // 5c
	ReasonAttestationBadSignature // 5e
	ReasonSessionTimestampSkew    // 6a
	ReasonSessionMalformed        // 6b
	ReasonSessionBadSignature     // 6c
	ReasonParentUnauthorized      // 7b
	ReasonParentMemberIDMismatch  // 8

	// Both handshakes, after the signature checks (A.3-21).
	ReasonReplayed         // signature already used within the skew window
	ReasonMemberCapacity   // MAX_CONNECTIONS_PER_MEMBER, no grace lease to evict (A.3-22)
	ReasonHelloRateLimited // too many verified hellos of one member

	// Closes outside the handshake checks (B.1, A.3-9).
	ReasonHelloTimeout      // no hello in time
	ReasonSessionReplaced   // same session connected again
	ReasonShuttingDown      // replica draining
	ReasonKicked            // kick verb
	ReasonKickedStale       // kick verb with stale
	ReasonDisconnected      // disconnect verb
	ReasonDisconnectedStale // disconnect verb with stale
	ReasonBanned            // ban verb
	ReasonSlowConsumer      // send queue overflowed
	ReasonTooLarge          // frame over MAX_MESSAGE_BYTES
	ReasonMeshArchived      // the owner deleted (archived) the mesh (A.3-23)

	numReasons
)

// WebSocket close codes (RFC 6455 section 7.4, and upstream's 4001/4002).
const (
	closeNormal          = 1000
	closeGoingAway       = 1001
	closePolicyViolation = 1008
	closeMessageTooBig   = 1009
	closeTryAgainLater   = 1013
	closeKicked          = 4001
	closeBanned          = 4002
	closeMeshArchived    = 4003 // meshd's own: the mesh no longer exists
)

// revokedPrefix and revokedSuffix frame the mesh label in upstream's text for
// a removed member (B.2-4a). The label goes in verbatim, as upstream's
// template literal puts it, not quoted or escaped.
const (
	revokedPrefix = `You've been removed from "`
	revokedSuffix = `". Contact the mesh owner to rejoin.`
)

// reasonInfo is one row of the reasons table.
type reasonInfo struct {
	name      string // String(); unique
	code      string // error.code
	message   string // error.message ("" for revoked/banned: built from the label)
	close     int    // WebSocket close code
	closeText string // WebSocket close reason
	metric    string // reason label
	handshake bool   // a hello/session_hello rejection: counted in broker_connections_rejected_total
	terminal  bool   // the client must not reconnect on its own
}

// reasons is the single mapping of STYLE #8. Strings marked normative in
// docs/protocol.md B.2/B.3 are pinned by reject_test.go.
//
// Terminal means retrying the same handshake cannot succeed (bad keys or
// signatures, not a member, removed by an admin) or that another socket now
// owns the session; clients stop and tell the user. Everything else means
// "reconnect with backoff": capacity, clock skew and an expired attestation
// (clients re-mint one per connect) can clear up, and shutdown, soft
// disconnects, slow consumers and oversized frames say nothing about the
// client's right to connect. Upstream's legacy client stops only on 4001
// and 4002; both are terminal here too.
var reasons = [numReasons]reasonInfo{
	OK: {name: "ok"},

	ReasonBadSessionPubkey: {"bad_session_pubkey", "bad_session_pubkey", "sessionPubkey must be 64 lowercase hex chars",
		closePolicyViolation, "bad_session_pubkey", "bad_session_pubkey", true, true},
	ReasonCapacity: {"capacity", "capacity", "mesh at connection capacity",
		closePolicyViolation, "capacity", "capacity", true, false},
	ReasonRevoked: {"revoked", "revoked", "",
		closeBanned, "banned", "revoked", true, true},

	ReasonTimestampSkew: {"timestamp_skew", "timestamp_skew", "hello rejected: timestamp_skew",
		closePolicyViolation, "timestamp_skew", "timestamp_skew", true, false},
	ReasonMalformed: {"malformed", "malformed", "hello rejected: malformed",
		closePolicyViolation, "malformed", "malformed", true, true},
	ReasonBadSignature: {"bad_signature", "bad_signature", "hello rejected: bad_signature",
		closePolicyViolation, "bad_signature", "bad_signature", true, true},
	ReasonUnauthorized: {"unauthorized", "unauthorized", "pubkey not found in mesh",
		closePolicyViolation, "unauthorized", "unauthorized", true, true},

	ReasonBadParentPubkey: {"bad_parent_pubkey", "bad_parent_pubkey", "parentMemberPubkey must be 64 lowercase hex chars",
		closePolicyViolation, "bad_parent_pubkey", "bad_parent_pubkey", true, true},
	ReasonAttestationMismatch: {"attestation_mismatch", "attestation_mismatch", "parentAttestation does not bind the claimed session+parent pubkeys",
		closePolicyViolation, "attestation_mismatch", "attestation_mismatch", true, true},
	ReasonAttestationMalformed: {"attestation_malformed", "malformed", "attestation rejected: malformed",
		closePolicyViolation, "malformed", "attestation_malformed", true, true},
	ReasonAttestationExpired: {"attestation_expired", "expired", "attestation rejected: expired",
		closePolicyViolation, "expired", "attestation_expired", true, false},
	ReasonAttestationTTLTooLong: {"attestation_ttl_too_long", "ttl_too_long", "attestation rejected: ttl_too_long",
		closePolicyViolation, "ttl_too_long", "attestation_ttl_too_long", true, true},
	ReasonAttestationBadSignature: {"attestation_bad_signature", "bad_signature", "attestation rejected: bad_signature",
		closePolicyViolation, "bad_signature", "attestation_bad_signature", true, true},
	ReasonSessionTimestampSkew: {"session_timestamp_skew", "timestamp_skew", "session_hello rejected: timestamp_skew",
		closePolicyViolation, "timestamp_skew", "session_timestamp_skew", true, false},
	ReasonSessionMalformed: {"session_malformed", "malformed", "session_hello rejected: malformed",
		closePolicyViolation, "malformed", "session_malformed", true, true},
	ReasonSessionBadSignature: {"session_bad_signature", "bad_signature", "session_hello rejected: bad_signature",
		closePolicyViolation, "bad_signature", "session_bad_signature", true, true},
	ReasonParentUnauthorized: {"parent_unauthorized", "unauthorized", "parent pubkey not found in mesh",
		closePolicyViolation, "unauthorized", "unauthorized", true, true},
	ReasonParentMemberIDMismatch: {"parent_member_id_mismatch", "parent_member_id_mismatch", "parentMemberId does not match parentMemberPubkey",
		closePolicyViolation, "parent_member_id_mismatch", "parent_member_id_mismatch", true, true},
	// A replayed hello: the legitimate client signs a fresh timestamp on
	// every connect, so retrying is harmless (not terminal).
	ReasonReplayed: {"replayed", "replayed", "hello rejected: replayed",
		closePolicyViolation, "replayed", "replayed", true, false},
	// The same error and close as the mesh cap (clients back off and
	// retry), told apart by the message and the metric.
	ReasonMemberCapacity: {"member_capacity", "capacity", "member at connection capacity",
		closePolicyViolation, "capacity", "member_capacity", true, false},
	ReasonHelloRateLimited: {"hello_rate_limited", "rate_limited", "too many hellos for this member; retry later",
		closeTryAgainLater, "rate_limited", "rate_limited", true, false},

	// Not rejections of a presented hello, except hello_timeout, which
	// rejects a socket that never presented one.
	ReasonHelloTimeout: {"hello_timeout", "hello_timeout", "no hello received in time",
		closePolicyViolation, "hello_timeout", "hello_timeout", true, false},
	ReasonSessionReplaced: {"session_replaced", "session_replaced", "another connection took over this session",
		closeNormal, "session_replaced", "session_replaced", false, true},
	ReasonShuttingDown: {"shutting_down", "shutting_down", "broker shutting down; reconnect",
		closeGoingAway, "shutting down", "shutting_down", false, false},
	ReasonKicked: {"kicked", "kicked", "kicked by a mesh admin",
		closeKicked, "kicked", "kicked", false, true},
	ReasonKickedStale: {"kicked_stale", "kicked", "kicked by a mesh admin (stale)",
		closeKicked, "kicked_stale", "kicked_stale", false, true},
	ReasonDisconnected: {"disconnected", "disconnected", "disconnected by a mesh admin; reconnect",
		closeNormal, "disconnected", "disconnected", false, false},
	ReasonDisconnectedStale: {"disconnected_stale", "disconnected", "disconnected by a mesh admin (stale); reconnect",
		closeNormal, "disconnected_stale", "disconnected_stale", false, false},
	ReasonBanned: {"banned", "banned", "",
		closeBanned, "banned", "banned", false, true},
	ReasonSlowConsumer: {"slow_consumer", "slow_consumer", "connection too slow to keep up; reconnect",
		closeTryAgainLater, "slow_consumer", "slow_consumer", false, false},
	// Upstream's ws library closes 1009 with an empty reason (B.1).
	ReasonTooLarge: {"too_large", "too_large", "frame exceeds MAX_MESSAGE_BYTES",
		closeMessageTooBig, "", "too_large", false, false},
	// Archiving a mesh closes its sockets on every replica; reconnecting
	// cannot succeed (the hello then gets unauthorized), so terminal.
	ReasonMeshArchived: {"mesh_archived", "mesh_archived", "this mesh was deleted by its owner",
		closeMeshArchived, "mesh_archived", "mesh_archived", false, true},
}

func (r Reason) info() reasonInfo {
	if r < 0 || r >= numReasons {
		return reasonInfo{}
	}
	return reasons[r]
}

// String returns a name unique among reasons, for logs.
func (r Reason) String() string {
	if r < 0 || r >= numReasons {
		return "Reason(" + strconv.Itoa(int(r)) + ")"
	}
	return reasons[r].name
}

// Code is the error frame's code.
func (r Reason) Code() string { return r.info().code }

// Message is the error frame's message. label names the mesh in the revoked
// and banned texts (B.2-4a: mesh name, else slug, else id) and is ignored by
// the others.
func (r Reason) Message(label string) string {
	if r == ReasonRevoked || r == ReasonBanned {
		return revokedPrefix + label + revokedSuffix
	}
	return r.info().message
}

// ErrorFrame is the error frame sent before closing (B.2/B.3).
func (r Reason) ErrorFrame(label string) Error {
	return Error{Type: TypeError, Code: r.Code(), Message: r.Message(label)}
}

// CloseCode is the WebSocket close code.
func (r Reason) CloseCode() int { return r.info().close }

// CloseText is the WebSocket close reason.
func (r Reason) CloseText() string { return r.info().closeText }

// Metric is the reason label: of broker_connections_rejected_total when
// Handshake is true (B.2/B.3 name these; two reasons may share one, e.g.
// unauthorized), else of the broker's close counter.
func (r Reason) Metric() string { return r.info().metric }

// Handshake reports whether r rejects a socket before it authenticated
// (hello, session_hello, or no hello at all).
func (r Reason) Handshake() bool { return r.info().handshake }

// Terminal reports whether a client must stop instead of reconnecting; see
// the reasons table for the policy.
func (r Reason) Terminal() bool { return r.info().terminal }

// AllReasons lists every reason except OK, in declaration order, for tests
// and for pre-registering metric label values.
func AllReasons() []Reason {
	out := make([]Reason, 0, numReasons-1)
	for r := OK + 1; r < numReasons; r++ {
		out = append(out, r)
	}
	return out
}

// FromClose maps a close frame a client received back to a reason. Several
// reasons share a close frame (all 1008 "malformed" reasons, say); the first
// in declaration order is returned, and the table keeps Terminal the same
// across such a group. ok is false for a close the broker never sends.
func FromClose(code int, text string) (r Reason, ok bool) {
	for _, r := range AllReasons() {
		if reasons[r].close == code && reasons[r].closeText == text {
			return r, true
		}
	}
	return OK, false
}

// MetricLabels lists the distinct metric labels of the handshake reasons
// (handshake true: broker_connections_rejected_total) or of the others
// (broker_connections_closed_total), in declaration order.
func MetricLabels(handshake bool) []string {
	var out []string
	for _, r := range AllReasons() {
		if r.Handshake() == handshake && !slices.Contains(out, r.Metric()) {
			out = append(out, r.Metric())
		}
	}
	return out
}

// FromMetric maps a reason's metric label back to the reason (the first
// in declaration order); presence control messages carry the label.
func FromMetric(label string) (Reason, bool) {
	for _, r := range AllReasons() {
		if r.Metric() == label {
			return r, true
		}
	}
	return OK, false
}
