package broker

import "slices"

// CapEphemeral is the hello capability of a one-shot control-plane
// connection (meshctl send, peers, status, grants; A.3-32): its presence
// is left out of peers_list, gets no peer_joined/peer_returned (nor their
// audit entries) and, on close or when its replica goes away, ends at once
// — no grace lease, so no peer_left either, and no peer_state saved. It
// still sends, receives and acks like any control-plane connection.
const CapEphemeral = "ephemeral"

// ephemeralHello reports whether hello capabilities ask for an ephemeral
// presence. Only a member-key hello may; session_hello ignores it.
func ephemeralHello(caps []string) bool { return slices.Contains(caps, CapEphemeral) }
