package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
)

// API keys (migration 0021, docs/protocol.md C): only the SHA-256 of a secret is stored;
// GET /api/v1/members looks a key up by that hash (tokenHash: lowercase hex
// of the whole secret, as upstream stores it).

// CreateAPIKey inserts k with the hash of secret, under a transaction-scoped
// advisory lock of the mesh so the cap on live keys holds.
func (s *Store) CreateAPIKey(ctx context.Context, meshID string, k *collab.APIKey, secret string, maxLive int) error {
	k.ID = meshd.NewRandomID() // named by prefix: NewRandomID
	caps, err := json.Marshal(k.Capabilities)
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	var scopes any
	if k.TopicScopes != nil {
		b, err := json.Marshal(k.TopicScopes)
		if err != nil {
			return fmt.Errorf("create api key: %w", err)
		}
		scopes = string(b)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var n int
		err := tx.QueryRow(ctx, `
SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended('mesh.api_key:' || $1, 0))) l, mesh.api_key
WHERE mesh_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`, meshID).Scan(&n)
		if err != nil {
			return err
		}
		if n >= maxLive {
			return collab.ErrLimit
		}
		return tx.QueryRow(ctx, `
INSERT INTO mesh.api_key (id, mesh_id, label, secret_hash, secret_prefix, capabilities, topic_scopes, issued_by_member_id, expires_at)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9) RETURNING created_at`,
			k.ID, meshID, k.Label, tokenHash(secret), k.Prefix, string(caps), scopes, nullIfEmpty(k.IssuedBy), k.ExpiresAt).
			Scan(&k.CreatedAt)
	})
	if errors.Is(err, collab.ErrLimit) {
		return err
	}
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	return nil
}

// ListAPIKeys returns the mesh's keys newest first, revoked and expired
// included.
func (s *Store) ListAPIKeys(ctx context.Context, meshID string, limit int) ([]collab.APIKey, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id, label, secret_prefix, capabilities, topic_scopes, COALESCE(issued_by_member_id, ''),
	created_at, last_used_at, revoked_at, expires_at
FROM mesh.api_key WHERE mesh_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, meshID, limit)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	var out []collab.APIKey
	var k collab.APIKey
	var caps, scopes []byte
	_, err = pgx.ForEachRow(rows, []any{&k.ID, &k.Label, &k.Prefix, &caps, &scopes, &k.IssuedBy,
		&k.CreatedAt, &k.LastUsedAt, &k.RevokedAt, &k.ExpiresAt}, func() error {
		k.Capabilities, k.TopicScopes = nil, nil
		if err := json.Unmarshal(caps, &k.Capabilities); err != nil {
			return fmt.Errorf("key %s capabilities: %w", k.ID, err)
		}
		if scopes != nil {
			if err := json.Unmarshal(scopes, &k.TopicScopes); err != nil {
				return fmt.Errorf("key %s topic scopes: %w", k.ID, err)
			}
		}
		out = append(out, k)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey revokes the mesh's key whose id is id or starts with it (a
// literal prefix: no LIKE patterns), if memberID issued it or admin is set.
// Revoking a revoked key succeeds again without moving revoked_at.
func (s *Store) RevokeAPIKey(ctx context.Context, meshID, id, memberID string, admin bool) (string, error) {
	var full string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
SELECT id, COALESCE(issued_by_member_id, '') FROM mesh.api_key
WHERE mesh_id = $1 AND (id = $2 OR starts_with(id, $2)) ORDER BY id = $2 DESC LIMIT 2 FOR UPDATE`, meshID, id)
		if err != nil {
			return err
		}
		type cand struct{ id, issuer string }
		var cs []cand
		var c cand
		if _, err := pgx.ForEachRow(rows, []any{&c.id, &c.issuer}, func() error { cs = append(cs, c); return nil }); err != nil {
			return err
		}
		switch {
		case len(cs) == 0:
			return meshd.ErrNotFound
		case len(cs) == 2 && cs[0].id != id:
			return meshd.ErrAmbiguous
		case !admin && cs[0].issuer != memberID:
			return collab.ErrForbidden
		}
		full = cs[0].id
		_, err = tx.Exec(ctx, `UPDATE mesh.api_key SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, full)
		return err
	})
	switch {
	case errors.Is(err, meshd.ErrNotFound), errors.Is(err, meshd.ErrAmbiguous), errors.Is(err, collab.ErrForbidden):
		return "", err
	case err != nil:
		return "", fmt.Errorf("revoke api key: %w", err)
	}
	return full, nil
}

// APIKeyAuth is a live API key presented as a bearer token.
type APIKeyAuth struct {
	ID, MeshID   string
	Capabilities []string
	IssuedBy     string // member id; "" when the issuer is gone
}

// LookupAPIKey returns the key whose secret is secret if it is neither
// revoked nor expired and its mesh is live, and records its use;
// meshd.ErrNotFound otherwise.
func (s *Store) LookupAPIKey(ctx context.Context, secret string) (APIKeyAuth, error) {
	var k APIKeyAuth
	var caps []byte
	err := s.pool.QueryRow(ctx, `
UPDATE mesh.api_key k SET last_used_at = now()
FROM mesh.mesh m
WHERE k.secret_hash = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
	AND m.id = k.mesh_id AND m.archived_at IS NULL
RETURNING k.id, k.mesh_id, k.capabilities, COALESCE(k.issued_by_member_id, '')`, tokenHash(secret)).
		Scan(&k.ID, &k.MeshID, &caps, &k.IssuedBy)
	if err != nil {
		return k, fmt.Errorf("lookup api key: %w", notFound(err))
	}
	if err := json.Unmarshal(caps, &k.Capabilities); err != nil {
		return k, fmt.Errorf("lookup api key %s: %w", k.ID, err)
	}
	return k, nil
}

// APIMember is one row of GET /api/v1/members: an active member of the
// mesh with its online state from its newest visible live presence.
type APIMember struct {
	MemberID, Pubkey, DisplayName, Role string
	JoinedAt                            time.Time
	Online                              bool
	PeerType                            string // of the newest live presence; "" when offline
	Status                              string // "idle" when offline
	Summary                             *string
}

// APIMembers lists the active members of meshID by display name.
func (s *Store) APIMembers(ctx context.Context, meshID string) ([]APIMember, error) {
	rows, err := s.pool.Query(ctx, `
SELECT m.id, m.peer_pubkey, m.display_name, m.role, m.joined_at, p.id IS NOT NULL,
	COALESCE(p.peer_type, ''), COALESCE(p.status, 'idle'), p.summary
FROM mesh.member m
LEFT JOIN LATERAL (SELECT id, peer_type, status, summary FROM mesh.presence
	WHERE member_id = m.id AND disconnected_at IS NULL AND visible ORDER BY connected_at DESC LIMIT 1) p ON true
WHERE m.mesh_id = $1 AND m.revoked_at IS NULL
ORDER BY m.display_name, m.id`, meshID)
	if err != nil {
		return nil, fmt.Errorf("api members: %w", err)
	}
	var m APIMember
	out, err := collectRows(rows, []any{&m.MemberID, &m.Pubkey, &m.DisplayName, &m.Role, &m.JoinedAt, &m.Online,
		&m.PeerType, &m.Status, &m.Summary}, &m)
	if err != nil {
		return nil, fmt.Errorf("api members: %w", err)
	}
	return out, nil
}
