package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
)

// ShareContext upserts the member's one context (E.7).
func (s *Store) ShareContext(ctx context.Context, meshID, memberID, presenceID string, c collab.SharedContext) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `
INSERT INTO mesh.context (id, mesh_id, member_id, presence_id, peer_name, summary, files_read, key_findings, tags)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (mesh_id, member_id) DO UPDATE SET presence_id = EXCLUDED.presence_id, peer_name = EXCLUDED.peer_name,
	summary = EXCLUDED.summary, files_read = EXCLUDED.files_read, key_findings = EXCLUDED.key_findings,
	tags = EXCLUDED.tags, updated_at = now()
RETURNING id`, meshd.NewID(), meshID, memberID, nullIfEmpty(presenceID), c.PeerName, c.Summary,
		nonNilStrings(c.FilesRead), nonNilStrings(c.KeyFindings), nonNilStrings(c.Tags)).Scan(&id)
	if err != nil {
		return "", fmt.Errorf("share context: %w", err)
	}
	return id, nil
}

// SearchContexts matches query literally in the summary (case-insensitive)
// or exactly among the tags, newest first.
func (s *Store) SearchContexts(ctx context.Context, meshID, query string, limit int) ([]collab.SharedContext, error) {
	rows, err := s.pool.Query(ctx, `
SELECT COALESCE(peer_name, 'unknown'), summary, files_read, key_findings, tags, updated_at FROM mesh.context
WHERE mesh_id = $1 AND (summary ILIKE $2 ESCAPE '\' OR $3 = ANY(tags))
ORDER BY updated_at DESC, id LIMIT $4`, meshID, likePattern(query), query, limit)
	if err != nil {
		return nil, fmt.Errorf("search contexts: %w", err)
	}
	return scanContexts(rows, true)
}

// ListContexts returns every context of the mesh, newest first.
func (s *Store) ListContexts(ctx context.Context, meshID string) ([]collab.SharedContext, error) {
	rows, err := s.pool.Query(ctx, `
SELECT COALESCE(peer_name, 'unknown'), summary, tags, updated_at FROM mesh.context
WHERE mesh_id = $1 ORDER BY updated_at DESC, id`, meshID)
	if err != nil {
		return nil, fmt.Errorf("list contexts: %w", err)
	}
	return scanContexts(rows, false)
}

func scanContexts(rows pgx.Rows, full bool) ([]collab.SharedContext, error) {
	var out []collab.SharedContext
	var c collab.SharedContext
	dest := []any{&c.PeerName, &c.Summary, &c.Tags, &c.UpdatedAt}
	if full {
		dest = []any{&c.PeerName, &c.Summary, &c.FilesRead, &c.KeyFindings, &c.Tags, &c.UpdatedAt}
	}
	_, err := pgx.ForEachRow(rows, dest, func() error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("contexts: %w", err)
	}
	return out, nil
}
