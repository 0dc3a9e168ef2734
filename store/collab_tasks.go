package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
)

// CreateTask inserts an open task (E.5).
func (s *Store) CreateTask(ctx context.Context, meshID, memberID string, t *collab.Task) error {
	t.ID, t.Status = meshd.NewRandomID(), "open" // claimed by the 8 characters the CLI shows
	err := s.pool.QueryRow(ctx, `
INSERT INTO mesh.task (id, mesh_id, title, assignee, priority, tags, created_by_name, created_by_member)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at`,
		t.ID, meshID, t.Title, nullIfEmpty(t.Assignee), t.Priority, nonNilStrings(t.Tags),
		nullIfEmpty(t.CreatedBy), nullIfEmpty(memberID)).Scan(&t.CreatedAt)
	if err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	return nil
}

// resolveTaskLocked finds the task id (exact, else a unique prefix) and
// locks its row in tx.
func resolveTaskLocked(ctx context.Context, tx pgx.Tx, meshID, id string) (full, status string, err error) {
	rows, err := tx.Query(ctx, `
SELECT id, status FROM mesh.task WHERE mesh_id = $1 AND (id = $2 OR id LIKE $3 ESCAPE '\')
ORDER BY (id = $2) DESC LIMIT 2 FOR UPDATE`, meshID, id, prefixPattern(id))
	if err != nil {
		return "", "", err
	}
	type row struct{ id, status string }
	var found []row
	var r row
	_, err = pgx.ForEachRow(rows, []any{&r.id, &r.status}, func() error {
		found = append(found, r)
		return nil
	})
	switch {
	case err != nil:
		return "", "", err
	case len(found) == 0:
		return "", "", meshd.ErrNotFound
	case found[0].id == id, len(found) == 1:
		return found[0].id, found[0].status, nil
	}
	return "", "", meshd.ErrAmbiguous
}

func prefixPattern(p string) string {
	return likeEscaper.Replace(p) + "%"
}

// ClaimTask sets an open task claimed by the caller.
func (s *Store) ClaimTask(ctx context.Context, meshID, id, presenceID, memberID, name string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		full, status, err := resolveTaskLocked(ctx, tx, meshID, id)
		if err != nil {
			return err
		}
		if status != "open" {
			return collab.ErrNotClaimable
		}
		_, err = tx.Exec(ctx, `UPDATE mesh.task SET status = 'claimed', claimed_by_presence = $2, claimed_by_member = $3,
	claimed_by_name = $4, claimed_at = now() WHERE id = $1`, full, nullIfEmpty(presenceID), nullIfEmpty(memberID), nullIfEmpty(name))
		return err
	})
	if err != nil {
		return fmt.Errorf("claim task: %w", err)
	}
	return nil
}

// CompleteTask sets a task done with its result, from any status.
func (s *Store) CompleteTask(ctx context.Context, meshID, id, result string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		full, _, err := resolveTaskLocked(ctx, tx, meshID, id)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE mesh.task SET status = 'done', result = $2, completed_at = now() WHERE id = $1`, full, nullIfEmpty(result))
		return err
	})
	if err != nil {
		return fmt.Errorf("complete task: %w", err)
	}
	return nil
}

// ListTasks lists tasks newest first, filtered by exact status/assignee.
func (s *Store) ListTasks(ctx context.Context, meshID, status, assignee string, limit int) ([]collab.Task, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id, title, COALESCE(assignee, ''), COALESCE(claimed_by_name, ''), status, priority,
	COALESCE(created_by_name, ''), tags, COALESCE(result, ''), created_at
FROM mesh.task WHERE mesh_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR assignee = $3)
ORDER BY created_at DESC, id DESC LIMIT $4`, meshID, status, assignee, limit)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	var out []collab.Task
	var t collab.Task
	_, err = pgx.ForEachRow(rows, []any{&t.ID, &t.Title, &t.Assignee, &t.ClaimedBy, &t.Status, &t.Priority,
		&t.CreatedBy, &t.Tags, &t.Result, &t.CreatedAt}, func() error {
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return out, nil
}
