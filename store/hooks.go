package store

import (
	"context"
	"fmt"
	"time"

	"github.com/meshd/meshd"
)

// HookPresences returns the live presences (disconnected_at IS NULL, grace
// leases included) that a POST /hook/set-status for (pid, cwd) addresses,
// in every mesh, newest first (B.6.4, A.3-14). pid 0 means "not given".
//
// With a pid, every live presence with that (pid, cwd) is returned and
// nothing else: one Claude Code session connected to several meshes has one
// row per mesh, and a hook speaks for all of them. A pid that matches no
// presence does not fall back (upstream picked the newest presence with the
// cwd, which let anyone who guessed a cwd steer any session by varying the
// pid, issue 12): the caller stores the status as pending. Without a pid
// (0), upstream's fallback stays: the newest live presence with that cwd,
// with the other live presences sharing its (pid, cwd), i.e. the same
// session in the other meshes. No match is an empty slice, not an error.
func (s *Store) HookPresences(ctx context.Context, pid int, cwd string) ([]meshd.Presence, error) {
	rows, err := s.pool.Query(ctx, `
WITH pick AS (
	SELECT CASE WHEN $2 <> 0 THEN $2 ELSE
		(SELECT pid FROM mesh.presence
			WHERE disconnected_at IS NULL AND cwd = $1 ORDER BY connected_at DESC, id DESC LIMIT 1)
	END AS pid
)
SELECT `+presenceCols+`
FROM mesh.presence p JOIN mesh.member m ON m.id = p.member_id
WHERE p.disconnected_at IS NULL AND p.cwd = $1 AND p.pid = (SELECT pid FROM pick)
ORDER BY p.connected_at DESC, p.id DESC`, cwd, pid)
	if err != nil {
		return nil, fmt.Errorf("hook presences: %w", err)
	}
	out, err := scanPresences(rows)
	if err != nil {
		return nil, fmt.Errorf("hook presences: %w", err)
	}
	return out, nil
}

// AddPendingStatus records a hook status that arrived before its presence
// (B.6.5 first-turn race): Attach applies the newest one for (pid, cwd)
// within its pending window, with source hook. pid 0 means "not given" and
// only matches a presence that reported pid 0.
func (s *Store) AddPendingStatus(ctx context.Context, pid int, cwd string, status meshd.Status) error {
	if !status.Valid() {
		return fmt.Errorf("add pending status: invalid status %q", status)
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.pending_status (id, pid, cwd, status, status_source) VALUES ($1, $2, $3, $4, 'hook')`,
		meshd.NewID(), pid, cwd, string(status))
	if err != nil {
		return fmt.Errorf("add pending status: %w", err)
	}
	return nil
}

// SweepPendingStatus deletes pending hook statuses that were applied or are
// older than olderThan (B.6.5: every 10 s, rows older than 10 s); an expired
// row can never be applied, so keeping it only grows the table. Safe on
// several replicas at once. Returns the number of rows deleted.
func (s *Store) SweepPendingStatus(ctx context.Context, olderThan time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
DELETE FROM mesh.pending_status
WHERE applied_at IS NOT NULL OR created_at < now() - make_interval(secs => $1::float8)`, secs(olderThan))
	if err != nil {
		return 0, fmt.Errorf("sweep pending status: %w", err)
	}
	return tag.RowsAffected(), nil
}
