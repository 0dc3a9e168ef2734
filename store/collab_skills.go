package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
)

// ShareSkill upserts a skill by (mesh, name); the caller becomes its author.
func (s *Store) ShareSkill(ctx context.Context, meshID, memberID string, sk collab.Skill) error {
	var manifest any
	if len(sk.Manifest) > 0 {
		manifest = string(sk.Manifest)
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.skill (id, mesh_id, name, description, instructions, tags, author_member_id, author_name, manifest)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)
ON CONFLICT (mesh_id, name) DO UPDATE SET description = EXCLUDED.description, instructions = EXCLUDED.instructions,
	tags = EXCLUDED.tags, manifest = EXCLUDED.manifest, author_member_id = EXCLUDED.author_member_id,
	author_name = EXCLUDED.author_name, updated_at = now()`,
		meshd.NewID(), meshID, sk.Name, sk.Description, sk.Instructions, nonNilStrings(sk.Tags),
		nullIfEmpty(memberID), nullIfEmpty(sk.Author), manifest)
	if err != nil {
		return fmt.Errorf("share skill: %w", err)
	}
	return nil
}

// GetSkill returns one skill by exact name.
func (s *Store) GetSkill(ctx context.Context, meshID, name string) (collab.Skill, error) {
	var sk collab.Skill
	var manifest []byte
	err := s.pool.QueryRow(ctx, `
SELECT name, description, instructions, tags, COALESCE(author_name, ''), manifest, created_at
FROM mesh.skill WHERE mesh_id = $1 AND name = $2`, meshID, name).
		Scan(&sk.Name, &sk.Description, &sk.Instructions, &sk.Tags, &sk.Author, &manifest, &sk.CreatedAt)
	if err != nil {
		return sk, fmt.Errorf("get skill: %w", notFound(err))
	}
	if manifest != nil {
		sk.Manifest = json.RawMessage(manifest)
	}
	return sk, nil
}

// ListSkills lists skills by name; query filters name, description and
// tags (literal, case-insensitive).
func (s *Store) ListSkills(ctx context.Context, meshID, query string) ([]collab.Skill, error) {
	rows, err := s.pool.Query(ctx, `
SELECT name, description, tags, COALESCE(author_name, ''), created_at FROM mesh.skill
WHERE mesh_id = $1 AND ($2 = '' OR name ILIKE $3 ESCAPE '\' OR description ILIKE $3 ESCAPE '\'
	OR EXISTS (SELECT 1 FROM unnest(tags) t WHERE t ILIKE $3 ESCAPE '\'))
ORDER BY name`, meshID, query, likePattern(query))
	if err != nil {
		return nil, fmt.Errorf("list skills: %w", err)
	}
	var out []collab.Skill
	var sk collab.Skill
	_, err = pgx.ForEachRow(rows, []any{&sk.Name, &sk.Description, &sk.Tags, &sk.Author, &sk.CreatedAt}, func() error {
		out = append(out, sk)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list skills: %w", err)
	}
	return out, nil
}

// RemoveSkill deletes a skill by name.
func (s *Store) RemoveSkill(ctx context.Context, meshID, name string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mesh.skill WHERE mesh_id = $1 AND name = $2`, meshID, name)
	if err != nil {
		return false, fmt.Errorf("remove skill: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}
