package jobs

import (
	"context"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

const (
	staleAfter    = 90 * time.Second // B.1: three missed pings
	statsInterval = 30 * time.Second // B.5 broker_queue_depth cadence
	// orphanAge and orphanInterval: undelivered rows older than 7 days are
	// deleted hourly (B.5, A.3-6).
	orphanAge      = 7 * 24 * time.Hour
	orphanInterval = time.Hour
)

// UpkeepStore is the presence and queue upkeep's part of the database. Each
// statement is idempotent and safe on several replicas at once (an evicted
// row is returned to exactly one caller, so peer_left is published once).
type UpkeepStore interface {
	// EvictExpiredLeases disconnects presences whose grace lease ended and
	// returns each evicted row once.
	EvictExpiredLeases(ctx context.Context) ([]meshd.Presence, error)
	// LeaseStalePresences starts the grace lease of live presences whose
	// socket stopped answering pings (staleAfter) or whose node stopped
	// heartbeating (nodeDeadAfter).
	LeaseStalePresences(ctx context.Context, staleAfter, nodeDeadAfter, grace time.Duration) (int64, error)
	// DeleteOrphans deletes undelivered rows older than olderThan.
	DeleteOrphans(ctx context.Context, olderThan time.Duration) (int64, error)
	// QueueStats reports undelivered rows and the age of the oldest.
	QueueStats(ctx context.Context) (depth int64, oldest time.Duration, err error)
	// DeleteExpiredHelloSignatures removes used handshake signatures past
	// their expiry.
	DeleteExpiredHelloSignatures(ctx context.Context) (int64, error)
}

// Upkeep runs the cluster-wide presence and queue upkeep until ctx ends,
// every SweepInterval: dead-node and stale-presence leasing, lease eviction
// with peer_left and its audit row, the queue gauges and the 7-day orphan
// sweep.
func (j *Jobs) Upkeep(ctx context.Context) error {
	var lastStats, lastOrphans time.Time
	return every(ctx, j.cfg.SweepInterval, func(ctx context.Context) {
		j.upkeep(ctx, &lastStats, &lastOrphans)
	})
}

func (j *Jobs) upkeep(ctx context.Context, lastStats, lastOrphans *time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st := j.cfg.Store
	// A node that missed three heartbeats is dead (kill -9): its presences
	// enter the grace lease now, not after the 90 s pong staleness.
	if _, err := st.LeaseStalePresences(ctx, staleAfter, 3*j.cfg.SweepInterval+time.Second, j.cfg.Grace); err != nil {
		j.log.Warn().Err(err).Msg("stale presence sweep")
	}
	j.evictLeases(ctx)
	if _, err := st.DeleteExpiredHelloSignatures(ctx); err != nil {
		j.log.Warn().Err(err).Msg("hello signature sweep")
	}
	if time.Since(*lastStats) >= statsInterval {
		*lastStats = time.Now()
		if depth, oldest, err := st.QueueStats(ctx); err == nil {
			j.met.queueDepth.Set(float64(depth))
			j.met.queueOldestAge.Set(oldest.Seconds())
		}
	}
	if time.Since(*lastOrphans) >= orphanInterval {
		*lastOrphans = time.Now()
		if n, err := st.DeleteOrphans(ctx, orphanAge); err != nil {
			j.log.Warn().Err(err).Msg("orphan sweep")
		} else if n > 0 {
			j.log.Info().Int64("rows", n).Msg("orphans swept")
		}
	}
}

// evictLeases ends presences whose grace lease expired: peer_left to the
// mesh (A.3-12) and an audit row, once per presence cluster-wide.
func (j *Jobs) evictLeases(ctx context.Context) {
	evicted, err := j.cfg.Store.EvictExpiredLeases(ctx)
	if err != nil {
		j.log.Warn().Err(err).Msg("lease eviction")
	}
	for _, p := range evicted {
		j.log.Info().Str("mesh_id", p.MeshID).Str("presence_id", p.ID).Msg("lease grace expired — evicting")
		if err := j.publishSystem(ctx, p.MeshID, "peer_left", wire.SystemEventOf(p), p.MemberPubkey); err != nil {
			j.log.Warn().Err(err).Msg("publish peer_left")
		}
		actor := p.MemberID
		j.cfg.Audit.Record(ctx, p.MeshID, meshd.AuditEvent{EventType: "peer_left", ActorMemberID: &actor,
			ActorDisplayName: p.DisplayName, Payload: map[string]any{}})
	}
}
