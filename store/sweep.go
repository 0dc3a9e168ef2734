package store

import (
	"context"
	"fmt"
	"time"

	"github.com/meshd/meshd"
)

// The sweeps below are idempotent single statements: several replicas may
// run them at once (the leader normally runs them alone), and row locks make
// a second runner see the first one's result instead of repeating it.

// ReleaseExpiredClaims clears the lease of undelivered rows whose claim
// expired (B.5, every 15 s upstream) and returns how many. Claim already
// treats an expired claim as free; this keeps the columns honest and the
// count visible.
func (s *Store) ReleaseExpiredClaims(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
UPDATE mesh.message_queue SET claimed_at = NULL, claim_id = NULL, claim_expires_at = NULL
WHERE delivered_at IS NULL AND claim_expires_at < now()`)
	if err != nil {
		return 0, fmt.Errorf("release expired claims: %w", err)
	}
	return tag.RowsAffected(), nil
}

// DeleteOrphans deletes undelivered rows older than olderThan (A.3-6: 7 days)
// and returns how many. Delivered rows are kept (message_status reads them).
func (s *Store) DeleteOrphans(ctx context.Context, olderThan time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
DELETE FROM mesh.message_queue
WHERE delivered_at IS NULL AND created_at < now() - make_interval(secs => $1::float8)`, secs(olderThan))
	if err != nil {
		return 0, fmt.Errorf("delete orphans: %w", err)
	}
	return tag.RowsAffected(), nil
}

// QueueStats returns the number of undelivered rows (claimed ones included,
// as broker_queue_depth upstream) and the age of the oldest one (0 when the
// queue is empty). The delivery canary's rows (meshd.SystemMeshID) are not
// counted: they are no one's messages.
func (s *Store) QueueStats(ctx context.Context) (depth int64, oldestAge time.Duration, err error) {
	var ageSecs float64
	err = s.pool.QueryRow(ctx, `
SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
FROM mesh.message_queue WHERE delivered_at IS NULL AND mesh_id <> $1`, meshd.SystemMeshID).Scan(&depth, &ageSecs)
	if err != nil {
		return 0, 0, fmt.Errorf("queue stats: %w", err)
	}
	if ageSecs < 0 { // a row stamped by a transaction that started after ours
		ageSecs = 0
	}
	return depth, time.Duration(ageSecs * float64(time.Second)), nil
}

// sweepBatch bounds the presences one sweep statement touches. The dead-node
// and lease sweeps run in batches of their own transactions, one connection
// at a time, and skip rows a hello holds (FOR UPDATE SKIP LOCKED), so after
// a replica dies the cleanup of its thousands of presences never holds
// their locks for long nor waits on the sessions reattaching them; a row
// skipped now is taken by the next batch or the next sweep, or no longer
// qualifies because it was reattached (the lock re-checks the predicate).
const sweepBatch = 500

// EvictExpiredLeases disconnects presences whose grace lease ended
// (lease_until < now) and returns them, with MemberPubkey and the effective
// DisplayName, so the caller can announce peer_left and audit it (B.6.9).
// With concurrent callers each row is returned by exactly one of them: a
// row locked by another caller is skipped, and the UPDATE re-checks
// disconnected_at once it holds the lock. Batches of sweepBatch.
func (s *Store) EvictExpiredLeases(ctx context.Context) ([]meshd.Presence, error) {
	var out []meshd.Presence
	for {
		rows, err := s.pool.Query(ctx, `
WITH victim AS (
	SELECT v.id FROM mesh.presence v
	WHERE v.disconnected_at IS NULL AND v.lease_until < now()
	LIMIT $1
	FOR UPDATE SKIP LOCKED
)
UPDATE mesh.presence p SET disconnected_at = now()
FROM victim, mesh.member m
WHERE p.id = victim.id AND m.id = p.member_id
RETURNING `+presenceCols, sweepBatch)
		if err != nil {
			return out, fmt.Errorf("evict expired leases: %w", err)
		}
		batch, err := scanPresences(rows)
		out = append(out, batch...)
		if err != nil {
			return out, fmt.Errorf("evict expired leases: %w", err)
		}
		if len(batch) < sweepBatch {
			return out, nil
		}
	}
}

// LeaseStalePresences puts live, non-leased presences into their grace lease
// (lease_until = now + grace) when their last pong is older than staleAfter
// or their node's heartbeat is older than nodeDeadAfter: the replica holding
// them is gone or wedged (kill -9), and its clients will reattach elsewhere.
// Ephemeral presences (A.3-32) are ended instead, never announced.
// Returns how many were leased.
//
// It runs in batches of sweepBatch that skip rows a hello holds (see
// sweepBatch): a dead replica's presences are leased without competing
// with the sessions reattaching them.
func (s *Store) LeaseStalePresences(ctx context.Context, staleAfter, nodeDeadAfter, grace time.Duration) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `
WITH victim AS (
	SELECT v.id FROM mesh.presence v
	WHERE v.disconnected_at IS NULL AND v.lease_until IS NULL
		AND (v.last_ping_at < now() - make_interval(secs => $1::float8)
			OR EXISTS (SELECT 1 FROM mesh.node n
				WHERE n.id = v.node_id AND n.heartbeat_at < now() - make_interval(secs => $3::float8)))
	LIMIT $4
	FOR UPDATE SKIP LOCKED
)
UPDATE mesh.presence p SET lease_until = now() + make_interval(secs => $2::float8),
	disconnected_at = CASE WHEN p.ephemeral THEN now() END
FROM victim WHERE p.id = victim.id`,
			secs(staleAfter), secs(grace), secs(nodeDeadAfter), sweepBatch)
		if err != nil {
			return total, fmt.Errorf("lease stale presences: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < sweepBatch {
			return total, nil
		}
	}
}

// LeaseNodePresences puts every live, non-leased presence of nodeID into its
// grace lease: graceful shutdown of one replica touches only its own
// presences, and their clients reattach on any replica (A.3-17). Ephemeral
// presences are ended instead.
func (s *Store) LeaseNodePresences(ctx context.Context, nodeID string, grace time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
UPDATE mesh.presence SET lease_until = now() + make_interval(secs => $2::float8),
	disconnected_at = CASE WHEN ephemeral THEN now() END
WHERE node_id = $1 AND disconnected_at IS NULL AND lease_until IS NULL`, nodeID, secs(grace))
	if err != nil {
		return 0, fmt.Errorf("lease node presences: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Heartbeat records that nodeID (reachable at addr) is alive: it upserts the
// node row and bumps heartbeat_at. LeaseStalePresences leases the presences
// of a node whose heartbeat goes stale.
func (s *Store) Heartbeat(ctx context.Context, nodeID, addr string) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.node (id, addr) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET addr = EXCLUDED.addr, heartbeat_at = now()`, nodeID, addr)
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

// SetDraining marks nodeID as draining (shutdown, STYLE #11) so operators can
// see which replica is leaving; the row is created when missing.
func (s *Store) SetDraining(ctx context.Context, nodeID string) error {
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.node (id, draining) VALUES ($1, true)
ON CONFLICT (id) DO UPDATE SET draining = true`, nodeID)
	if err != nil {
		return fmt.Errorf("set draining: %w", err)
	}
	return nil
}
