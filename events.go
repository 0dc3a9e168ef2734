package meshd

import "encoding/json"

// Kinds of MeshEvent.
const (
	// MeshEventBroadcast is a broadcast or group multicast push: each
	// replica pushes it to its own eligible sockets, applying the target,
	// visibility and the recipients' grants.
	MeshEventBroadcast = "broadcast"
	// MeshEventSystem is a B.4.3 system push (peer_joined, peer_left, tick,
	// …) for every socket of the mesh but the excluded ones.
	MeshEventSystem = "system"
	// MeshEventFrame is a frame sent as is (state_change, B.14.1).
	MeshEventFrame = "frame"
	// MeshEventArchived closes every socket of the mesh (MeshArchivedEvent).
	MeshEventArchived = "mesh_archived"
)

// MeshEvent is the envelope published on MeshTopic: whoever publishes (the
// socket code, the leader jobs, the control plane) encodes one, and every
// replica's socket code applies it to its own sockets of the mesh.
type MeshEvent struct {
	Kind string `json:"kind"`
	// Push is the encoded wire.Push (broadcast, system); Frame an encoded
	// frame sent as is (frame). Either is written to sockets verbatim.
	Push  json.RawMessage `json:"push,omitempty"`
	Frame json.RawMessage `json:"frame,omitempty"`
	// Priority is the broadcast push's priority (the routed-messages metric).
	Priority string `json:"priority,omitempty"`
	// Target is the broadcast's target: "*", "@all" or "@group".
	Target              string `json:"target,omitempty"`
	SenderMemberID      string `json:"senderMemberId,omitempty"`
	SenderMemberPubkey  string `json:"senderMemberPubkey,omitempty"`
	SenderSessionPubkey string `json:"senderSessionPubkey,omitempty"`
	// ExcludeMemberPubkey skips that member's sockets (system); the
	// ExcludePresenceID skips one presence (system, frame).
	ExcludeMemberPubkey string `json:"excludeMemberPubkey,omitempty"`
	ExcludePresenceID   string `json:"excludePresenceId,omitempty"`
}

// Encode is the event as published; it fails only when Push or Frame is
// not valid JSON.
func (e MeshEvent) Encode() ([]byte, error) { return json.Marshal(e) }
