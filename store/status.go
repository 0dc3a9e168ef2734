package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
)

// writeStatusSQL returns the one statement that applies the B.6.2 status
// write rules to every presence row matching pred (written against alias p,
// its own arguments from $4 on). $1 is the new status, $2 its source, $3 the
// freshness window in seconds. Source ranks: hook 3 > manual 2 > jsonl 1.
//   - status differs → status, source and timestamp are set;
//   - same status, incoming rank ≥ recorded → source and timestamp;
//   - same status, lower rank → timestamp only while the recorded source is
//     fresh (0 ≤ now − status_updated_at ≤ window), else source is downgraded.
//
// On top of B.6.2, a manual dnd row is only ever changed by a manual write:
// the hook endpoint, the JSONL fallback and the TTL sweep all leave it alone
// ("DND is sacred", B.6.3, B.6.4, B.6.6), and doing it here means no caller
// can forget. Only a manual dnd is sacred (issue 12): a dnd some other
// source wrote (an unauthenticated hook, before meshd refused dnd there)
// must not hold a session's messages forever. The row lock taken by the CTE makes concurrent writers
// serialize, each seeing the other's result. Returns (id, new status,
// changed) per updated row; a timestamp-only bump is not a change.
func writeStatusSQL(pred string) string {
	return `
WITH cur AS (
	SELECT p.id, p.status, p.status_source, p.status_updated_at
	FROM mesh.presence p
	WHERE ` + pred + `
	FOR UPDATE
)
UPDATE mesh.presence p SET
	status = $1::text,
	status_source = CASE
		WHEN cur.status <> $1::text THEN $2::text
		WHEN ` + rankSQL("$2::text") + ` >= ` + rankSQL("cur.status_source") + ` THEN $2::text
		WHEN ` + freshSQL("cur.status_updated_at", "$3") + ` THEN cur.status_source
		ELSE $2::text
	END,
	status_updated_at = now()
FROM cur
WHERE p.id = cur.id AND (cur.status <> 'dnd' OR cur.status_source <> 'manual' OR $2::text = 'manual')
RETURNING p.id, p.status, (p.status <> cur.status OR p.status_source <> cur.status_source)`
}

func rankSQL(expr string) string {
	return "(CASE " + expr + " WHEN 'hook' THEN 3 WHEN 'manual' THEN 2 ELSE 1 END)"
}

// freshSQL is B.6.2's freshness test: 0 ≤ now − at ≤ window.
func freshSQL(at, windowSecs string) string {
	return "(now() - " + at + " BETWEEN interval '0' AND make_interval(secs => " + windowSecs + "::float8))"
}

func validStatusWrite(status meshd.Status, source meshd.StatusSource) error {
	if !status.Valid() {
		return fmt.Errorf("invalid status %q", status)
	}
	switch source {
	case meshd.SourceHook, meshd.SourceManual, meshd.SourceJSONL:
		return nil
	}
	return fmt.Errorf("invalid status source %q", source)
}

// WriteStatus applies the B.6.2 status write rules to one presence (see
// writeStatusSQL): a manual dnd is never changed unless the new source is
// manual. changed reports whether status or source changed (a timestamp-only
// bump is not a change). meshd.ErrNotFound when the presence does not exist.
func (s *Store) WriteStatus(ctx context.Context, presenceID string, status meshd.Status,
	source meshd.StatusSource, freshWindow time.Duration) (changed bool, err error) {
	if err := validStatusWrite(status, source); err != nil {
		return false, fmt.Errorf("write status: %w", err)
	}
	changed, err = writeStatusOne(ctx, s.pool, presenceID, status, source, freshWindow)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.presenceExists(ctx, presenceID)
	}
	if err != nil {
		return false, fmt.Errorf("write status: %w", err)
	}
	return changed, nil
}

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// writeStatusOne returns pgx.ErrNoRows when the row is missing or dnd-protected.
func writeStatusOne(ctx context.Context, q querier, presenceID string, status meshd.Status,
	source meshd.StatusSource, freshWindow time.Duration) (bool, error) {
	var id string
	var st meshd.Status
	var changed bool
	err := q.QueryRow(ctx, writeStatusSQL("p.id = $4"), string(status), string(source), secs(freshWindow), presenceID).
		Scan(&id, &st, &changed)
	return changed, err
}

func (s *Store) presenceExists(ctx context.Context, presenceID string) error {
	var one int
	err := s.pool.QueryRow(ctx, "SELECT 1 FROM mesh.presence WHERE id = $1", presenceID).Scan(&one)
	return notFound(err)
}

// RefreshStatus applies the remote-broker JSONL fallback before a drain
// (B.6.3): this broker never sees the client's transcripts, so a status that
// is not dnd and not a fresh hook (within freshWindow) is written as idle with
// source jsonl, through the B.6.2 rules. Returns the resulting status;
// meshd.ErrNotFound when the presence does not exist. A row already
// idle/jsonl is not rewritten.
//
// inferred is what the transcript says (claudepath.StatusForCWD when
// JSONL_STATUS_DIR is set); a remote broker passes idle.
func (s *Store) RefreshStatus(ctx context.Context, presenceID string, freshWindow time.Duration, inferred meshd.Status) (meshd.Status, error) {
	if !inferred.Valid() || inferred == meshd.StatusDND {
		inferred = meshd.StatusIdle
	}
	var id string
	var st meshd.Status
	var changed bool
	err := s.pool.QueryRow(ctx, writeStatusSQL(refreshPred),
		string(inferred), string(meshd.SourceJSONL), secs(freshWindow), presenceID).Scan(&id, &st, &changed)
	if errors.Is(err, pgx.ErrNoRows) {
		err = s.pool.QueryRow(ctx, "SELECT status FROM mesh.presence WHERE id = $1", presenceID).Scan(&st)
	}
	if err != nil {
		return "", fmt.Errorf("refresh status: %w", notFound(err))
	}
	return st, nil
}

// refreshPred selects the presence $4 for the JSONL fallback: not dnd, no
// fresh hook status, and not already the inferred status from jsonl.
var refreshPred = `p.id = $4 AND p.status <> 'dnd'
		AND NOT (p.status_source = 'hook' AND ` + freshSQL("p.status_updated_at", "$3") + `)
		AND NOT (p.status = $1 AND p.status_source = 'jsonl')`

// refreshAnyPred is refreshPred for every presence of the array $4 (a
// claim batch refreshes its claimers' presences in one statement).
var refreshAnyPred = strings.Replace(refreshPred, "p.id = $4", "p.id = ANY($4::text[])", 1)

// SweepStatusTTL is the B.6.6 TTL sweep: live presences whose status is
// working and older than ttl are written idle/jsonl through the B.6.2 rules
// (dnd and idle rows are untouched). Returns how many rows flipped. Safe on
// several replicas at once: the row locks make a second sweeper see the
// first one's result.
func (s *Store) SweepStatusTTL(ctx context.Context, ttl, freshWindow time.Duration) (int64, error) {
	pred := `p.disconnected_at IS NULL AND p.status = 'working'
		AND p.status_updated_at < now() - make_interval(secs => $4::float8)`
	rows, err := s.pool.Query(ctx, writeStatusSQL(pred),
		string(meshd.StatusIdle), string(meshd.SourceJSONL), secs(freshWindow), secs(ttl))
	if err != nil {
		return 0, fmt.Errorf("status ttl sweep: %w", err)
	}
	var n int64
	var id string
	var st meshd.Status
	var changed bool
	_, err = pgx.ForEachRow(rows, []any{&id, &st, &changed}, func() error {
		if changed {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("status ttl sweep: %w", err)
	}
	return n, nil
}
