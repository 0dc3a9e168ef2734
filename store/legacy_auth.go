package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// LegacyAuthHits are the legacy-auth hits of one (user, route) a replica
// gathered since its last flush.
type LegacyAuthHits struct {
	UserID, Route string
	First, Last   time.Time
	Count         int64
}

// LegacyAuthUse is one row of `meshd legacy-auth report`.
type LegacyAuthUse struct {
	UserID  string    `json:"userId"`
	Route   string    `json:"route"`
	FirstAt time.Time `json:"firstAt"`
	LastAt  time.Time `json:"lastAt"`
	Hits    int64     `json:"hits"`
}

// RecordLegacyAuthHits upserts hits in one statement: first_at keeps the
// earliest, last_at the latest, hits adds up. Several replicas may flush
// the same key at once (the row lock orders them).
func (s *Store) RecordLegacyAuthHits(ctx context.Context, hits []LegacyAuthHits) error {
	if len(hits) == 0 {
		return nil
	}
	users, routes := make([]string, len(hits)), make([]string, len(hits))
	first, last, counts := make([]time.Time, len(hits)), make([]time.Time, len(hits)), make([]int64, len(hits))
	for i, h := range hits {
		users[i], routes[i], first[i], last[i], counts[i] = h.UserID, h.Route, h.First, h.Last, h.Count
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.legacy_auth_use AS u (user_id, route, first_at, last_at, hits)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::bigint[])
ORDER BY 1, 2
ON CONFLICT (user_id, route) DO UPDATE SET
	first_at = least(u.first_at, excluded.first_at),
	last_at = greatest(u.last_at, excluded.last_at),
	hits = u.hits + excluded.hits`, users, routes, first, last, counts)
	if err != nil {
		return fmt.Errorf("record legacy auth hits: %w", err)
	}
	return nil
}

// LegacyAuthReport lists the (user, route) pairs with a legacy hit within
// since (0: all), most recent first.
func (s *Store) LegacyAuthReport(ctx context.Context, since time.Duration) ([]LegacyAuthUse, error) {
	var cutoff *float64
	if since > 0 {
		v := secs(since)
		cutoff = &v
	}
	rows, err := s.pool.Query(ctx, `
SELECT user_id, route, first_at, last_at, hits FROM mesh.legacy_auth_use
WHERE $1::float8 IS NULL OR last_at >= now() - make_interval(secs => $1::float8)
ORDER BY last_at DESC, user_id, route`, cutoff)
	if err != nil {
		return nil, fmt.Errorf("legacy auth report: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LegacyAuthUse])
	if err != nil {
		return nil, fmt.Errorf("legacy auth report: %w", err)
	}
	return out, nil
}

// LegacyAuthUsers counts the distinct users with a legacy hit within window.
func (s *Store) LegacyAuthUsers(ctx context.Context, window time.Duration) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT count(DISTINCT user_id) FROM mesh.legacy_auth_use
WHERE last_at >= now() - make_interval(secs => $1::float8)`, secs(window)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("legacy auth users: %w", err)
	}
	return n, nil
}
