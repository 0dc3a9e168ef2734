package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
)

// Presence fields the WS verbs change (B.6.7). Each statement touches one
// live row; a presence that was disconnected meanwhile is left alone.

// SetPresenceSummary sets presence.summary.
func (s *Store) SetPresenceSummary(ctx context.Context, presenceID, summary string) error {
	_, err := s.pool.Exec(ctx, `UPDATE mesh.presence SET summary = $2 WHERE id = $1 AND disconnected_at IS NULL`, presenceID, summary)
	if err != nil {
		return fmt.Errorf("set summary: %w", err)
	}
	return nil
}

// SetPresenceVisible sets presence.visible.
func (s *Store) SetPresenceVisible(ctx context.Context, presenceID string, visible bool) error {
	_, err := s.pool.Exec(ctx, `UPDATE mesh.presence SET visible = $2 WHERE id = $1 AND disconnected_at IS NULL`, presenceID, visible)
	if err != nil {
		return fmt.Errorf("set visible: %w", err)
	}
	return nil
}

// SetPresenceProfile replaces presence.profile (a JSON object).
func (s *Store) SetPresenceProfile(ctx context.Context, presenceID string, profile json.RawMessage) error {
	_, err := s.pool.Exec(ctx, `UPDATE mesh.presence SET profile = $2::jsonb WHERE id = $1 AND disconnected_at IS NULL`, presenceID, string(profile))
	if err != nil {
		return fmt.Errorf("set profile: %w", err)
	}
	return nil
}

// SetPresenceGroups replaces presence.groups.
func (s *Store) SetPresenceGroups(ctx context.Context, presenceID string, groups []meshd.Group) error {
	_, err := s.pool.Exec(ctx, `UPDATE mesh.presence SET groups = $2 WHERE id = $1 AND disconnected_at IS NULL`, presenceID, nonNilGroups(groups))
	if err != nil {
		return fmt.Errorf("set groups: %w", err)
	}
	return nil
}

// LoadPeerState returns the member's saved peer_state (B.2 "restored").
// meshd.ErrNotFound when the member never left one.
func (s *Store) LoadPeerState(ctx context.Context, meshID, memberID string) (meshd.PeerState, error) {
	var ps meshd.PeerState
	var profile, stats []byte
	err := s.pool.QueryRow(ctx, `
SELECT groups, profile, visible, COALESCE(last_summary, ''), COALESCE(last_display_name, ''), last_seen_at, cumulative_stats
FROM mesh.peer_state WHERE mesh_id = $1 AND member_id = $2`, meshID, memberID).
		Scan(&ps.Groups, &profile, &ps.Visible, &ps.LastSummary, &ps.LastDisplayName, &ps.LastSeenAt, &stats)
	if err != nil {
		return ps, fmt.Errorf("load peer state: %w", notFound(err))
	}
	ps.Profile, ps.Stats = profile, stats
	return ps, nil
}

// SavePeerState upserts the member's peer_state from a presence row when
// its socket closes (B.6.1): groups, profile, visibility, display name, the
// summary of the presence (else of another live presence of the member).
func (s *Store) SavePeerState(ctx context.Context, presenceID string) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.peer_state AS ps (id, mesh_id, member_id, groups, profile, visible, last_summary, last_display_name, last_seen_at, updated_at)
SELECT $2, p.mesh_id, p.member_id, p.groups, p.profile, p.visible,
	COALESCE(p.summary, (SELECT o.summary FROM mesh.presence o WHERE o.member_id = p.member_id AND o.disconnected_at IS NULL
		AND o.summary IS NOT NULL ORDER BY o.connected_at DESC LIMIT 1)),
	p.display_name, now(), now()
FROM mesh.presence p WHERE p.id = $1
ON CONFLICT (mesh_id, member_id) DO UPDATE SET
	groups = EXCLUDED.groups, profile = EXCLUDED.profile, visible = EXCLUDED.visible,
	last_summary = COALESCE(EXCLUDED.last_summary, ps.last_summary),
	last_display_name = COALESCE(EXCLUDED.last_display_name, ps.last_display_name),
	last_seen_at = now(), updated_at = now()`, presenceID, meshd.NewID())
	if err != nil {
		return fmt.Errorf("save peer state: %w", err)
	}
	return nil
}

// MergePeerStats raises the member's cumulative_stats to stats, per field
// (the larger of the stored and the given number; other fields are kept).
// A member without a peer_state row is left alone.
func (s *Store) MergePeerStats(ctx context.Context, meshID, memberID string, stats json.RawMessage) error {
	_, err := s.pool.Exec(ctx, `
UPDATE mesh.peer_state ps SET cumulative_stats = ps.cumulative_stats || COALESCE((
	SELECT jsonb_object_agg(r.key, GREATEST(COALESCE(ps.cumulative_stats->r.key, '0'), r.value))
	FROM jsonb_each($3::jsonb) r WHERE jsonb_typeof(r.value) = 'number'
		AND jsonb_typeof(COALESCE(ps.cumulative_stats->r.key, '0')) = 'number'), '{}'), updated_at = now()
WHERE ps.mesh_id = $1 AND ps.member_id = $2`, meshID, memberID, string(stats))
	if err != nil {
		return fmt.Errorf("merge peer stats: %w", err)
	}
	return nil
}

// Disconnect ends presences at once, without a grace lease (kick, ban):
// they are never evicted later, so no peer_left follows (B.6.10).
func (s *Store) Disconnect(ctx context.Context, presenceIDs []string) error {
	_, err := s.pool.Exec(ctx, `UPDATE mesh.presence SET disconnected_at = now(), lease_until = NULL
WHERE id = ANY($1) AND disconnected_at IS NULL`, presenceIDs)
	if err != nil {
		return fmt.Errorf("disconnect presences: %w", err)
	}
	return nil
}

// MeshMembers lists the members of meshID (revoked ones included), oldest
// first: the moderation verbs resolve their target among them.
func (s *Store) MeshMembers(ctx context.Context, meshID string) ([]meshd.Member, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+memberCols+` FROM mesh.member m WHERE m.mesh_id = $1 ORDER BY m.joined_at, m.id`, meshID)
	if err != nil {
		return nil, fmt.Errorf("mesh members: %w", err)
	}
	var out []meshd.Member
	var m meshd.Member
	_, err = pgx.ForEachRow(rows, memberDest(&m), func() error {
		out = append(out, m)
		m = meshd.Member{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mesh members: %w", err)
	}
	return out, nil
}

// UnrevokeMember clears revoked_at (unban). meshd.ErrNotFound when the
// member is not revoked; ErrConflict when another active member now holds
// the same pubkey.
func (s *Store) UnrevokeMember(ctx context.Context, meshID, memberID string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE mesh.member SET revoked_at = NULL WHERE mesh_id = $1 AND id = $2 AND revoked_at IS NOT NULL`, meshID, memberID)
	if isUniqueViolation(err) {
		return fmt.Errorf("unrevoke member: %w", ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("unrevoke member: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("unrevoke member: %w", meshd.ErrNotFound)
	}
	return nil
}

// MemberPresences lists the live presences of a member (every replica).
func (s *Store) MemberPresences(ctx context.Context, meshID, memberID string) ([]meshd.Presence, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+presenceCols+` FROM mesh.presence p JOIN mesh.member m ON m.id = p.member_id
WHERE p.mesh_id = $1 AND p.member_id = $2 AND p.disconnected_at IS NULL ORDER BY p.connected_at`, meshID, memberID)
	if err != nil {
		return nil, fmt.Errorf("member presences: %w", err)
	}
	out, err := scanPresences(rows)
	if err != nil {
		return nil, fmt.Errorf("member presences: %w", err)
	}
	return out, nil
}

// SetState upserts a shared-state key (B.14.1) and returns the stored entry.
func (s *Store) SetState(ctx context.Context, meshID, key string, value json.RawMessage, presenceID, name string) (meshd.StateEntry, error) {
	e := meshd.StateEntry{Key: key}
	var v []byte
	err := s.pool.QueryRow(ctx, `
INSERT INTO mesh.state (id, mesh_id, key, value, updated_by_presence, updated_by_name, updated_at)
VALUES ($1, $2, $3, $4::jsonb, $5, $6, now())
ON CONFLICT (mesh_id, key) DO UPDATE SET value = EXCLUDED.value, updated_by_presence = EXCLUDED.updated_by_presence,
	updated_by_name = EXCLUDED.updated_by_name, updated_at = now()
RETURNING value, COALESCE(updated_by_name, ''), updated_at`, meshd.NewID(), meshID, key, string(value), nullIfEmpty(presenceID), name).
		Scan(&v, &e.UpdatedBy, &e.UpdatedAt)
	if err != nil {
		return e, fmt.Errorf("set state: %w", err)
	}
	e.Value = v
	return e, nil
}

// GetState returns one key; meshd.ErrNotFound when unset.
func (s *Store) GetState(ctx context.Context, meshID, key string) (meshd.StateEntry, error) {
	e := meshd.StateEntry{Key: key}
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value, COALESCE(updated_by_name, ''), updated_at FROM mesh.state WHERE mesh_id = $1 AND key = $2`,
		meshID, key).Scan(&v, &e.UpdatedBy, &e.UpdatedAt)
	if err != nil {
		return e, fmt.Errorf("get state: %w", notFound(err))
	}
	e.Value = v
	return e, nil
}

// ListState returns every key of the mesh ordered by key.
func (s *Store) ListState(ctx context.Context, meshID string) ([]meshd.StateEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT key, value, COALESCE(updated_by_name, ''), updated_at FROM mesh.state WHERE mesh_id = $1 ORDER BY key`, meshID)
	if err != nil {
		return nil, fmt.Errorf("list state: %w", err)
	}
	var out []meshd.StateEntry
	var e meshd.StateEntry
	var v []byte
	_, err = pgx.ForEachRow(rows, []any{&e.Key, &v, &e.UpdatedBy, &e.UpdatedAt}, func() error {
		e.Value = append(json.RawMessage(nil), v...)
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list state: %w", err)
	}
	return out, nil
}
