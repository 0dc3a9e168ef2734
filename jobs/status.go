package jobs

import (
	"context"
	"time"
)

const (
	// ttlSweepInterval is upstream's cadence for the status TTL sweep (B.6.6).
	ttlSweepInterval = 15 * time.Second
	// pendingWindow is B.6.5 PENDING_TTL_MS: pending hook statuses older
	// than this (or applied) are swept.
	pendingWindow = 10 * time.Second
)

// StatusStore is the status sweeps' part of the database; each statement is
// idempotent.
type StatusStore interface {
	// SweepStatusTTL flips working presences older than ttl to idle (dnd
	// untouched, a hook status fresher than freshWindow kept) and returns
	// how many it flipped.
	SweepStatusTTL(ctx context.Context, ttl, freshWindow time.Duration) (int64, error)
	// SweepPendingStatus deletes pending hook statuses older than
	// olderThan or applied.
	SweepPendingStatus(ctx context.Context, olderThan time.Duration) (int64, error)
}

// StatusSweeps runs the status singletons until ctx ends: the TTL sweep
// every 15 s (working older than StatusTTL → idle, dnd untouched) and the
// pending-status sweep every 10 s.
func (j *Jobs) StatusSweeps(ctx context.Context) error {
	ttl := time.NewTicker(ttlSweepInterval)
	defer ttl.Stop()
	pending := time.NewTicker(pendingWindow)
	defer pending.Stop()
	j.TTLSweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ttl.C:
			j.TTLSweep(ctx)
		case <-pending.C:
			if _, err := j.cfg.Store.SweepPendingStatus(ctx, pendingWindow); err != nil && ctx.Err() == nil {
				j.log.Warn().Err(err).Msg("pending status sweep")
			}
		}
	}
}

// TTLSweep runs one status TTL sweep and counts it.
func (j *Jobs) TTLSweep(ctx context.Context) {
	n, err := j.cfg.Store.SweepStatusTTL(ctx, j.cfg.StatusTTL, j.cfg.HookFreshWindow)
	if err != nil {
		if ctx.Err() == nil {
			j.log.Warn().Err(err).Msg("ttl sweep")
		}
		return
	}
	j.met.ttlSweeps.WithLabelValues(flippedBucket(n)).Inc()
	j.met.ttlFlipped.Add(float64(n))
}
