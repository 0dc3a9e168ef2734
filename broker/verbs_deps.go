package broker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/meshd/meshd"
)

// PresenceEdits are the presence fields the WS verbs change (B.6.7) and the
// peer_state a member leaves behind (B.6.1).
type PresenceEdits interface {
	SetPresenceSummary(ctx context.Context, presenceID, summary string) error
	SetPresenceVisible(ctx context.Context, presenceID string, visible bool) error
	SetPresenceProfile(ctx context.Context, presenceID string, profile json.RawMessage) error
	SetPresenceGroups(ctx context.Context, presenceID string, groups []meshd.Group) error
	WriteStatus(ctx context.Context, presenceID string, status meshd.Status, source meshd.StatusSource, freshWindow time.Duration) (bool, error)
	LoadPeerState(ctx context.Context, meshID, memberID string) (meshd.PeerState, error)
	SavePeerState(ctx context.Context, presenceID string) error
	// MergePeerStats sets each counter of stats (an object of numbers) in
	// the member's peer_state.cumulative_stats to the larger of the stored
	// and the given value; no row, no change.
	MergePeerStats(ctx context.Context, meshID, memberID string, stats json.RawMessage) error
}
