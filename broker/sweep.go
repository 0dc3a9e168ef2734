package broker

import (
	"context"
	"strconv"
	"time"

	"github.com/meshd/meshd/wire"
)

const (
	pendingWindow = 10 * time.Second // B.6.5 PENDING_TTL_MS
	staleAfter    = 90 * time.Second // B.1: three missed pings
	statsInterval = 30 * time.Second // B.5 broker_queue_depth cadence
)

// sweepLoop is this replica's own upkeep: its node heartbeat (liveness for
// the dead-node detection in RunUpkeep) and its in-memory rate-limit map.
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

// orphanAge and orphanInterval: undelivered rows older than 7 days are
// deleted hourly (B.5, A.3-6).
const (
	orphanAge      = 7 * 24 * time.Hour
	orphanInterval = time.Hour
)

// RunUpkeep runs the cluster-wide presence and queue upkeep until ctx ends:
// dead-node and stale-presence leasing, lease eviction with peer_left and
// its audit row, the queue gauges and the 7-day orphan sweep. It runs under
// leadership (cmd/meshd wires an ha.Leader around it); every statement is
// also safe if two ran at once (an evicted row is returned to one caller).
func (s *Server) RunUpkeep(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	var lastStats, lastOrphans time.Time
	for {
		s.upkeep(ctx, &lastStats, &lastOrphans)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) upkeep(ctx context.Context, lastStats, lastOrphans *time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st := s.cfg.Store
	// A node that missed three heartbeats is dead (kill -9): its presences
	// enter the grace lease now, not after the 90 s pong staleness.
	if _, err := st.LeaseStalePresences(ctx, staleAfter, 3*s.cfg.SweepInterval+time.Second, s.cfg.Grace); err != nil {
		s.log.Warn().Err(err).Msg("stale presence sweep")
	}
	s.evictLeases(ctx)
	if _, err := st.DeleteExpiredHelloSignatures(ctx); err != nil {
		s.log.Warn().Err(err).Msg("hello signature sweep")
	}
	if time.Since(*lastStats) >= statsInterval {
		*lastStats = time.Now()
		if depth, oldest, err := st.QueueStats(ctx); err == nil {
			s.met.queueDepth.Set(float64(depth))
			s.met.queueOldestAge.Set(oldest.Seconds())
		}
	}
	if time.Since(*lastOrphans) >= orphanInterval {
		*lastOrphans = time.Now()
		if n, err := st.DeleteOrphans(ctx, orphanAge); err != nil {
			s.log.Warn().Err(err).Msg("orphan sweep")
		} else if n > 0 {
			s.log.Info().Int64("rows", n).Msg("orphans swept")
		}
	}
}

// evictLeases ends presences whose grace lease expired: peer_left to the
// mesh (A.3-12) and an audit row, once per presence cluster-wide.
func (s *Server) evictLeases(ctx context.Context) {
	evicted, err := s.cfg.Store.EvictExpiredLeases(ctx)
	if err != nil {
		s.log.Warn().Err(err).Msg("lease eviction")
	}
	for _, p := range evicted {
		s.log.Info().Str("mesh_id", p.MeshID).Str("presence_id", p.ID).Msg("lease grace expired — evicting")
		ev := wire.SystemEvent{Name: p.DisplayName, DisplayName: p.DisplayName, Pubkey: p.RoutingPubkey(), Groups: p.Groups, PeerType: p.PeerType}
		if err := s.publishSystem(ctx, p.MeshID, "peer_left", ev, p.MemberPubkey, ""); err != nil {
			s.log.Warn().Err(err).Msg("publish peer_left")
		}
		s.audit(ctx, p.MeshID, "peer_left", p.MemberID, p.DisplayName, map[string]any{})
	}
}

// LeaseLocalPresences puts every presence of this replica into its grace
// lease (graceful shutdown, A.3-17); called after the sockets are closed.
func (s *Server) LeaseLocalPresences(ctx context.Context) (int64, error) {
	return s.cfg.Store.LeaseNodePresences(ctx, s.cfg.NodeID, s.cfg.Grace)
}

func helloReasonLabels() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range wire.AllReasons() {
		if r.Handshake() && !seen[r.Metric()] {
			seen[r.Metric()] = true
			out = append(out, r.Metric())
		}
	}
	return out
}

func closeReasonLabels() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range wire.AllReasons() {
		if !r.Handshake() && !seen[r.Metric()] {
			seen[r.Metric()] = true
			out = append(out, r.Metric())
		}
	}
	return out
}

// reasonByMetric maps a close reason's metric label back to the reason
// (presence control messages carry the label).
func reasonByMetric(label string) (wire.Reason, bool) {
	for _, r := range wire.AllReasons() {
		if r.Metric() == label {
			return r, true
		}
	}
	return wire.OK, false
}

// ttlSweepInterval is upstream's cadence for the status TTL sweep (B.6.6).
const ttlSweepInterval = 15 * time.Second

// RunStatusSweeps runs the cluster-wide status singletons until ctx ends:
// the TTL sweep (working older than StatusTTL → idle, dnd untouched). It
// must run under leadership (cmd/meshd wires an ha.Leader around it) so it
// runs once per cluster; each statement is idempotent anyway.
func (s *Server) RunStatusSweeps(ctx context.Context) {
	ttl := time.NewTicker(ttlSweepInterval)
	defer ttl.Stop()
	pending := time.NewTicker(pendingWindow)
	defer pending.Stop()
	s.TTLSweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ttl.C:
			s.TTLSweep(ctx)
		case <-pending.C:
			// B.6.5: pending hook statuses older than 10 s or applied.
			if _, err := s.cfg.Store.SweepPendingStatus(ctx, pendingWindow); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("pending status sweep")
			}
		}
	}
}

// TTLSweep runs one status TTL sweep and counts it.
func (s *Server) TTLSweep(ctx context.Context) {
	n, err := s.cfg.Store.SweepStatusTTL(ctx, s.cfg.StatusTTL, s.cfg.HookFreshWindow)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("ttl sweep")
		}
		return
	}
	s.met.ttlSweeps.WithLabelValues(strconv.FormatInt(n, 10)).Inc()
}
