package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
)

// Collaboration rows (collab.Store): memory, tasks, contexts, skills, topics
// and the mesh_info aggregate. Every statement filters on mesh_id, so one
// mesh never sees or changes another's rows.

// Remember inserts a memory (E.4).
func (s *Store) Remember(ctx context.Context, meshID string, m *collab.Memory) error {
	m.ID = meshd.NewID()
	err := s.pool.QueryRow(ctx, `
INSERT INTO mesh.memory (id, mesh_id, content, tags, remembered_by, remembered_by_name)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING remembered_at`,
		m.ID, meshID, m.Content, nonNilStrings(m.Tags), nullIfEmpty(m.AuthorID), nullIfEmpty(m.AuthorName)).Scan(&m.RememberedAt)
	if err != nil {
		return fmt.Errorf("remember: %w", err)
	}
	return nil
}

// Recall is upstream's search (plainto_tsquery('english'), ts_rank DESC)
// over content and tags, with the newest first among equal ranks.
func (s *Store) Recall(ctx context.Context, meshID, query string, limit int) ([]collab.Memory, error) {
	if strings.TrimSpace(query) == "" {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
SELECT id, content, tags, COALESCE(remembered_by, ''), COALESCE(remembered_by_name, ''), remembered_at
FROM mesh.memory, plainto_tsquery('english', $2) q
WHERE mesh_id = $1 AND forgotten_at IS NULL AND search_vector @@ q
ORDER BY ts_rank(search_vector, q) DESC, remembered_at DESC, id
LIMIT $3`, meshID, query, limit)
	if err != nil {
		return nil, fmt.Errorf("recall: %w", err)
	}
	var out []collab.Memory
	var m collab.Memory
	_, err = pgx.ForEachRow(rows, []any{&m.ID, &m.Content, &m.Tags, &m.AuthorID, &m.AuthorName, &m.RememberedAt}, func() error {
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recall: %w", err)
	}
	return out, nil
}

// Forget soft-deletes a live memory written by memberID (any, for admins).
func (s *Store) Forget(ctx context.Context, meshID, memoryID, memberID string, admin bool) error {
	var allowed bool
	err := s.pool.QueryRow(ctx, `
WITH target AS (
	SELECT id, ($4 OR remembered_by = $3) AS allowed FROM mesh.memory
	WHERE id = $2 AND mesh_id = $1 AND forgotten_at IS NULL FOR UPDATE
), done AS (
	UPDATE mesh.memory m SET forgotten_at = now() FROM target t WHERE m.id = t.id AND t.allowed
)
SELECT allowed FROM target`, meshID, memoryID, memberID, admin).Scan(&allowed)
	if err != nil {
		return fmt.Errorf("forget: %w", notFound(err))
	}
	if !allowed {
		return fmt.Errorf("forget: %w", collab.ErrForbidden)
	}
	return nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// likePattern escapes LIKE wildcards so that q matches literally inside
// ILIKE '%' || pattern || '%' (upstream does not escape, E.7).
func likePattern(q string) string {
	return "%" + likeEscaper.Replace(q) + "%"
}

// likeEscaper escapes LIKE's wildcards and its escape character.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
