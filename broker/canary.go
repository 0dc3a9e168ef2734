package broker

// The delivery canary: readiness that proves the message road works, not
// only that its dependencies answer a ping. Every CanaryInterval each
// replica sends itself a row down the road every message takes — the group
// commit (enqueues), a wake-up on its own peer topic over the Fanout, a
// claim (Store.Claim) — in the reserved system mesh (meshd.SystemMeshID),
// and times the round trip (meshd_canary_seconds). When no round completed
// within CanaryStallAfter, /health/ready answers 503 delivery_stalled.
//
// Canary rows never reach a client: the system mesh is archived, so no
// hello resolves a member of it, the re-drain only looks at meshes with
// local sockets, and nothing else claims its rows. They are not counted in
// broker_queue_depth nor audited, and each round deletes the rows it
// claimed and any canary row older than canaryRowMaxAge.

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshd/meshd"
)

// Canary is what the delivery canary asks of the store beyond the queue.
type Canary interface {
	// DeleteCanaryRows deletes the system mesh's rows with the given ids
	// and any of its rows older than olderThan.
	DeleteCanaryRows(ctx context.Context, ids []string, olderThan time.Duration) (int64, error)
}

// canaryRowMaxAge: a canary row this old belongs to a stalled round or a
// replica that died; any replica's next round deletes it.
const canaryRowMaxAge = 5 * time.Minute

// canary stages, the label of meshd_canary_failures_total.
var canaryStages = []string{"subscribe", "enqueue", "publish", "wake", "claim"}

type canary struct {
	target string      // this replica's target in the system mesh
	topic  string      // its wake-up topic (meshd.PeerTopic)
	wakes  chan string // row ids of the wake-ups received
	lastOK atomic.Int64
	rtt    prometheus.Histogram
	fails  *prometheus.CounterVec
}

func (s *Server) newCanary() *canary {
	target := "canary-" + strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, s.cfg.NodeID)
	cn := &canary{
		target: target,
		topic:  meshd.PeerTopic(meshd.SystemMeshID, target),
		wakes:  make(chan string, 8),
		rtt: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshd_canary_seconds",
			Help:    "Round trip of the delivery canary: enqueue, wake-up over the fan-out, claim.",
			Buckets: []float64{.0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		fails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_canary_failures_total",
			Help: "Delivery canary rounds that did not complete, by the stage that failed.",
		}, []string{"stage"}),
	}
	for _, st := range canaryStages {
		cn.fails.WithLabelValues(st)
	}
	s.cfg.Registry.MustRegister(cn.rtt, cn.fails)
	cn.lastOK.Store(time.Now().UnixNano()) // the bound runs from New
	return cn
}

// onWake is the canary's wake-up subscription; it never blocks.
func (cn *canary) onWake(data []byte) {
	select {
	case cn.wakes <- string(data):
	default:
	}
}

// canaryStalled reports whether no canary round completed within
// CanaryStallAfter, and how long ago the last one did (or the replica
// started). Real time, not Config.Now: it bounds real round trips.
func (s *Server) canaryStalled() (bool, time.Duration) {
	since := time.Since(time.Unix(0, s.canary.lastOK.Load()))
	return since > s.cfg.CanaryStallAfter, since
}

// canaryLoop runs a round every CanaryInterval until ctx ends.
func (s *Server) canaryLoop(ctx context.Context) {
	cn := s.canary
	var release func()
	defer func() {
		if release != nil {
			release()
		}
	}()
	t := time.NewTicker(s.cfg.CanaryInterval)
	defer t.Stop()
	for {
		if release == nil {
			// Confirmed by the server before the first round publishes.
			r, err := s.cfg.Fanout.SubscribeAll([]string{cn.topic}, []func([]byte){cn.onWake})
			if err != nil {
				s.canaryFailed(ctx, "subscribe", err)
			} else {
				release = r
			}
		}
		if release != nil {
			s.canaryRound(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// canaryRound sends one canary row to this replica and claims it.
func (s *Server) canaryRound(ctx context.Context) {
	cn := s.canary
	rctx, cancel := context.WithTimeout(ctx, s.cfg.CanaryStallAfter)
	defer cancel()
	for len(cn.wakes) > 0 { // wake-ups of earlier rounds
		<-cn.wakes
	}
	start := time.Now()
	q := &meshd.QueuedMessage{
		MeshID: meshd.SystemMeshID, SenderMemberID: meshd.SystemMemberID, TargetSpec: cn.target,
		Priority: meshd.PriorityNow, SenderName: "delivery canary",
	}
	it := &enqueueItem{q: q}
	err := s.enqueues.do(rctx, it)
	if err == nil {
		err = it.err
	}
	if err != nil {
		s.canaryFailed(ctx, "enqueue", err)
		return
	}
	var claimed []string
	defer func() { s.canaryCleanup(ctx, claimed) }()
	if err := s.cfg.Fanout.Publish(rctx, meshd.PeerTopic(q.MeshID, q.TargetSpec), []byte(q.ID)); err != nil {
		s.canaryFailed(ctx, "publish", err)
		return
	}
	for woken := false; !woken; {
		select {
		case id := <-cn.wakes:
			woken = id == q.ID
		case <-rctx.Done():
			s.canaryFailed(ctx, "wake", context.Cause(rctx))
			return
		}
	}
	rows, err := s.cfg.Store.Claim(rctx, meshd.ClaimRequest{
		MeshID: meshd.SystemMeshID, ClaimerPresenceID: cn.target, MemberPubkey: cn.target,
		Priorities: []meshd.Priority{meshd.PriorityNow, meshd.PriorityNext, meshd.PriorityLow},
		Lease:      s.cfg.ClaimLease, Limit: claimBatch,
	})
	if err != nil {
		s.canaryFailed(ctx, "claim", err)
		return
	}
	found := false
	for _, d := range rows {
		claimed = append(claimed, d.ID)
		found = found || d.ID == q.ID
	}
	if !found {
		s.canaryFailed(ctx, "claim", errCanaryNotClaimed)
		return
	}
	cn.rtt.Observe(time.Since(start).Seconds())
	cn.lastOK.Store(time.Now().UnixNano())
}

type canaryError string

func (e canaryError) Error() string { return string(e) }

const errCanaryNotClaimed = canaryError("canary row not among the claimed rows")

func (s *Server) canaryFailed(ctx context.Context, stage string, err error) {
	s.canary.fails.WithLabelValues(stage).Inc()
	if ctx.Err() == nil {
		s.log.Warn().Err(err).Str("stage", stage).Msg("delivery canary round failed")
	}
}

// canaryCleanup deletes the rows a round claimed and stale canary rows.
func (s *Server) canaryCleanup(ctx context.Context, ids []string) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := s.cfg.Store.DeleteCanaryRows(cctx, ids, canaryRowMaxAge); err != nil && ctx.Err() == nil {
		s.log.Warn().Err(err).Msg("delivery canary cleanup")
	}
}
