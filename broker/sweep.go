package broker

import (
	"context"
	"time"
)

// pendingWindow bounds the age of a pending hook status applied to a new
// presence (B.6.5 PENDING_TTL_MS).
const pendingWindow = 10 * time.Second

// sweepLoop is this replica's own upkeep: its node heartbeat (liveness for
// the dead-node detection of the upkeep job, package jobs), the closing of
// archived meshes' sockets and its in-memory rate-limit maps.
func (s *Server) sweepLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	lastRL := s.cfg.Now()
	for {
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := s.cfg.Store.Heartbeat(hctx, s.cfg.NodeID, ""); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("node heartbeat")
		}
		cancel()
		s.closeArchivedMeshes(ctx)
		if now := s.cfg.Now(); now.Sub(lastRL) >= 5*time.Minute {
			lastRL = now
			s.sendRL.Sweep(10*time.Minute, now)
			s.helloRL.Sweep(10*time.Minute, now)
			s.verbRL.Sweep(10*time.Minute, now)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// LeaseLocalPresences puts every presence of this replica into its grace
// lease (graceful shutdown, A.3-17); called after the sockets are closed.
func (s *Server) LeaseLocalPresences(ctx context.Context) (int64, error) {
	return s.cfg.Store.LeaseNodePresences(ctx, s.cfg.NodeID, s.cfg.Grace)
}
