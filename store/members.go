package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
)

// memberCols selects a member row aliased m in the order scanMember reads.
const memberCols = `m.id, m.mesh_id, COALESCE(m.user_id, ''), m.peer_pubkey, m.display_name, m.role,
	COALESCE(m.role_tag, ''), m.default_groups, COALESCE(m.message_mode, ''), m.peer_grants, m.revoked_at`

func memberDest(m *meshd.Member) []any {
	return []any{&m.ID, &m.MeshID, &m.UserID, &m.Pubkey, &m.DisplayName, &m.Role,
		&m.RoleTag, &m.DefaultGroups, &m.MessageMode, &m.Grants, &m.RevokedAt}
}

// LookupMember returns the non-archived mesh meshID and its member with
// peer_pubkey = pubkey (exact string, B.2 step 4). An active row is
// preferred; when only revoked rows exist the most recently revoked one is
// returned with RevokedAt set (step 4a). meshd.ErrNotFound when the mesh or
// the member does not exist.
func (s *Store) LookupMember(ctx context.Context, meshID, pubkey string) (meshd.Mesh, meshd.Member, error) {
	var ms meshd.Mesh
	var m meshd.Member
	var selfEditable []byte
	dest := append([]any{&ms.ID, &ms.Slug, &ms.Name, &ms.OwnerUserID, &ms.OwnerPubkey, &ms.ArchivedAt, &selfEditable}, memberDest(&m)...)
	err := s.pool.QueryRow(ctx, `
SELECT ms.id, COALESCE(ms.slug, ''), ms.name, COALESCE(ms.owner_user_id, ''), COALESCE(ms.owner_pubkey, ''),
	ms.archived_at, ms.self_editable, `+memberCols+`
FROM mesh.mesh ms
JOIN mesh.member m ON m.mesh_id = ms.id
WHERE ms.id = $1 AND ms.archived_at IS NULL AND m.peer_pubkey = $2
ORDER BY m.revoked_at IS NULL DESC, m.revoked_at DESC, m.joined_at DESC
LIMIT 1`, meshID, pubkey).Scan(dest...)
	if err != nil {
		return meshd.Mesh{}, meshd.Member{}, fmt.Errorf("lookup member: %w", notFound(err))
	}
	if selfEditable != nil {
		ms.SelfEditable = selfEditable
	}
	return ms, m, nil
}

// DirectRecipient resolves a direct targetSpec (A.3-6): the active member
// whose pubkey is target, else the member of a live (not disconnected,
// possibly grace-leased) presence whose session pubkey is target.
// meshd.ErrNotFound otherwise.
func (s *Store) DirectRecipient(ctx context.Context, meshID, target string) (meshd.Member, error) {
	ms, err := s.DirectRecipients(ctx, []string{meshID}, []string{target})
	if err != nil {
		return meshd.Member{}, fmt.Errorf("direct recipient: %w", err)
	}
	if ms[0] == nil {
		return meshd.Member{}, fmt.Errorf("direct recipient: %w", meshd.ErrNotFound)
	}
	return *ms[0], nil
}

// directRecipientsSQL is DirectRecipient for every (mesh, target) pair of
// the arrays at once: the row of pair n carries ord n; a pair without a
// recipient has no row. Each pair is read by key only: the member by
// (mesh, pubkey); only when there is none, a live presence by (session
// pubkey, mesh) (migration 0027); then that member by id. LIMIT 1 keeps the
// last read a per-pair index lookup: as a plain join its generic plan could
// hash the whole member table.
const directRecipientsSQL = `
SELECT t.ord, ` + memberCols + `
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(mesh, target, ord)
LEFT JOIN LATERAL (
	SELECT m.id FROM mesh.member m
	WHERE m.mesh_id = t.mesh AND m.peer_pubkey = t.target AND m.revoked_at IS NULL
) d ON true
LEFT JOIN LATERAL (
	SELECT p.member_id FROM mesh.presence p JOIN mesh.member pm ON pm.id = p.member_id AND pm.revoked_at IS NULL
	WHERE d.id IS NULL AND p.session_pubkey = t.target AND p.mesh_id = t.mesh AND p.disconnected_at IS NULL
	LIMIT 1
) s ON true
CROSS JOIN LATERAL (
	SELECT m.* FROM mesh.member m WHERE m.id = COALESCE(d.id, s.member_id) LIMIT 1
) m`

// DirectRecipients resolves many direct targets in one statement, with
// DirectRecipient's rules: out[i] is the recipient of targets[i] in
// meshIDs[i], nil when there is none. The group commit resolves a batch's
// sends with it (docs/benchmarks.md), so no send waits for a pool
// connection on its socket's read loop.
func (s *Store) DirectRecipients(ctx context.Context, meshIDs, targets []string) ([]*meshd.Member, error) {
	if len(meshIDs) != len(targets) {
		return nil, fmt.Errorf("direct recipients: %d meshes, %d targets", len(meshIDs), len(targets))
	}
	out := make([]*meshd.Member, len(targets))
	rows, err := s.claims.Query(ctx, directRecipientsSQL, meshIDs, targets) // generic plan (New)
	if err != nil {
		return nil, fmt.Errorf("direct recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var ord int64
		m := new(meshd.Member)
		if err := rows.Scan(append([]any{&ord}, memberDest(m)...)...); err != nil {
			return nil, fmt.Errorf("direct recipients: %w", err)
		}
		if ord < 1 || int(ord) > len(out) {
			return nil, fmt.Errorf("direct recipients: row for pair %d of %d", ord, len(out))
		}
		out[ord-1] = m
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("direct recipients: %w", err)
	}
	return out, nil
}

// MemberGrants returns peer_grants keyed by member id for the given members
// of meshID (B.7); members that do not exist are absent from the map.
func (s *Store) MemberGrants(ctx context.Context, meshID string, memberIDs []string) (map[string]meshd.Grants, error) {
	out := make(map[string]meshd.Grants, len(memberIDs))
	if len(memberIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx,
		"SELECT id, peer_grants FROM mesh.member WHERE mesh_id = $1 AND id = ANY($2)", meshID, memberIDs)
	if err != nil {
		return nil, fmt.Errorf("member grants: %w", err)
	}
	var id string
	var g meshd.Grants
	_, err = pgx.ForEachRow(rows, []any{&id, &g}, func() error {
		out[id] = g
		g = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("member grants: %w", err)
	}
	return out, nil
}

// CreateMesh inserts m, setting m.ID (via meshd.NewID) when empty. An empty
// slug is stored as NULL (unique only among non-archived meshes otherwise);
// a taken slug fails with ErrConflict. Used by enrollment, admin tools and
// tests.
func (s *Store) CreateMesh(ctx context.Context, m *meshd.Mesh) error {
	if m.ID == "" {
		m.ID = meshd.NewID()
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.mesh (id, slug, name, owner_user_id, owner_pubkey, archived_at)
VALUES ($1, $2, $3, $4, $5, $6)`,
		m.ID, nullIfEmpty(m.Slug), m.Name, nullIfEmpty(m.OwnerUserID), nullIfEmpty(m.OwnerPubkey), m.ArchivedAt)
	if isUniqueViolation(err) {
		return fmt.Errorf("create mesh: %w: %w", ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("create mesh: %w", err)
	}
	return nil
}

// CreateMember inserts m, setting m.ID (via meshd.NewID) when empty. Role
// defaults to "member", DefaultGroups to [] and Grants to {}. A second
// active member with the same (mesh, pubkey) fails with ErrConflict.
func (s *Store) CreateMember(ctx context.Context, m *meshd.Member) error {
	if m.ID == "" {
		m.ID = meshd.NewID()
	}
	if m.Role == "" {
		m.Role = "member"
	}
	groups, err := json.Marshal(nonNilGroups(m.DefaultGroups))
	if err != nil {
		return fmt.Errorf("create member: %w", err)
	}
	grants := m.Grants
	if grants == nil {
		grants = meshd.Grants{}
	}
	grantsJSON, err := json.Marshal(grants)
	if err != nil {
		return fmt.Errorf("create member: %w", err)
	}
	_, err = s.pool.Exec(ctx, `
INSERT INTO mesh.member (id, mesh_id, user_id, peer_pubkey, display_name, role, role_tag,
	default_groups, message_mode, peer_grants, revoked_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9, $10::jsonb, $11)`,
		m.ID, m.MeshID, nullIfEmpty(m.UserID), m.Pubkey, m.DisplayName, m.Role, nullIfEmpty(m.RoleTag),
		string(groups), nullIfEmpty(m.MessageMode), string(grantsJSON), m.RevokedAt)
	if isUniqueViolation(err) {
		return fmt.Errorf("create member: %w: %w", ErrConflict, err)
	}
	if err != nil {
		return fmt.Errorf("create member: %w", err)
	}
	return nil
}

// RevokeMember sets revoked_at on a member of meshID (ban, B.6.10). Revoking
// an already revoked member keeps its original time. meshd.ErrNotFound when
// the member is not in the mesh.
func (s *Store) RevokeMember(ctx context.Context, meshID, memberID string) error {
	tag, err := s.pool.Exec(ctx,
		"UPDATE mesh.member SET revoked_at = COALESCE(revoked_at, now()) WHERE mesh_id = $1 AND id = $2",
		meshID, memberID)
	if err != nil {
		return fmt.Errorf("revoke member: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoke member: %w", meshd.ErrNotFound)
	}
	return nil
}

func nonNilGroups(g []meshd.Group) []meshd.Group {
	if g == nil {
		return []meshd.Group{}
	}
	return g
}
