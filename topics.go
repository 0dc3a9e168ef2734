package meshd

import "encoding/json"

// Fan-out topic scheme (logical; the fanout package prefixes them and maps
// them to NATS subjects). Whoever publishes or subscribes uses these, so a
// wake-up sent by the control plane reaches the socket code's subscription.
//
//	mesh.<meshId>               broadcasts, multicasts and system events of a mesh
//	peer.<meshId>.<pubkey>      wake-up for a member or session pubkey's queued rows
//	presence.<presenceId>       control for one presence's socket (close)

// MeshTopic is the topic of a mesh's broadcasts and system events.
func MeshTopic(meshID string) string { return "mesh." + meshID }

// PeerTopic is the wake-up topic of a member or session pubkey's queued rows.
func PeerTopic(meshID, pubkey string) string { return "peer." + meshID + "." + pubkey }

// MeshArchivedEvent is published on MeshTopic by the control plane after it
// archived the mesh: every replica closes the mesh's sockets with 4003
// mesh_archived (docs/protocol.md A.3-23).
const MeshArchivedEvent = `{"kind":"mesh_archived"}`

// MeshFrameEvent is what the control plane publishes on MeshTopic to have
// every replica write frame, as is, to every socket of the mesh (an inbound
// webhook's push, docs/protocol.md C.6). The broker reads it as its "frame"
// mesh event.
func MeshFrameEvent(frame json.RawMessage) ([]byte, error) {
	return MeshEvent{Kind: MeshEventFrame, Frame: frame}.Encode()
}

// PresenceTopic is the control topic of one presence's socket.
func PresenceTopic(presenceID string) string { return "presence." + presenceID }

// PresenceControl is published on PresenceTopic to close the presence's
// socket on whichever replica holds it.
type PresenceControl struct {
	SocketID string `json:"socketId,omitempty"` // "" = whatever socket holds it
	Reason   string `json:"reason"`             // the close reason's metric label (wire.Reason.Metric)
}
