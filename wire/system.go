package wire

import (
	"encoding/json"
	"time"

	"github.com/meshd/meshd"
)

// SystemPush is the one constructor of a B.4.3 system push (peer_joined,
// peer_left, tick, …): priority low, sender "system", a fresh message id,
// data as its eventData. It returns the push encoded, ready for a
// meshd.MeshEvent.
func SystemPush(meshID, event string, data any, now time.Time) (json.RawMessage, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	return json.Marshal(&Push{
		Type: TypePush, Subtype: "system", Event: event, EventData: raw,
		MessageID: meshd.NewID(), MeshID: meshID, SenderPubkey: "system",
		Priority: string(meshd.PriorityLow), CreatedAt: FormatISOTime(now),
	})
}

// SystemEventOf is the A.3-12 eventData of a presence's peer_joined,
// peer_returned or peer_left; Groups is never null.
func SystemEventOf(p meshd.Presence) SystemEvent {
	groups := p.Groups
	if groups == nil {
		groups = []meshd.Group{}
	}
	return SystemEvent{Name: p.DisplayName, DisplayName: p.DisplayName, Pubkey: p.RoutingPubkey(), Groups: groups, PeerType: p.PeerType}
}
