// Package canary is the delivery canary: readiness that proves the message
// road works, not only that its dependencies answer a ping. Every Interval
// each replica sends itself a row down the road every message takes — the
// broker's group commit (Enqueuer), a wake-up on its own peer topic over
// the fan-out, a claim (Store.Claim) — in the reserved system mesh
// (meshd.SystemMeshID), and times the round trip (meshd_canary_seconds).
// When no round completed within StallAfter, Stalled says so and the
// broker's /health/ready answers 503 delivery_stalled.
//
// Canary rows never reach a client: the system mesh is archived, so no
// hello resolves a member of it, the re-drain only looks at meshes with
// local sockets, and nothing else claims its rows. They are not counted in
// broker_queue_depth nor audited, and each round deletes the rows it
// claimed and any canary row older than canaryRowMaxAge.
package canary

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
)

// Store is what the canary asks of the database.
type Store interface {
	// Claim atomically claims eligible rows for one claimer (the queue's
	// claim, B.5).
	Claim(ctx context.Context, req meshd.ClaimRequest) ([]meshd.Delivery, error)
	// DeleteCanaryRows deletes the system mesh's rows with the given ids
	// and any of its rows older than olderThan.
	DeleteCanaryRows(ctx context.Context, ids []string, olderThan time.Duration) (int64, error)
}

// Fanout carries the canary's wake-up (fanout.Bus).
type Fanout interface {
	Publish(ctx context.Context, topic string, data []byte) error
	SubscribeAll(topics []string, deliver []func(data []byte)) (release func(), err error)
}

// Enqueuer is the road's group commit (the broker's): it returns once q is
// committed, with q.ID set.
type Enqueuer interface {
	Enqueue(ctx context.Context, q *meshd.QueuedMessage) error
}

// Config configures a Canary.
type Config struct {
	NodeID   string                // required: names this replica's target
	Store    Store                 // required
	Fanout   Fanout                // required
	Road     Enqueuer              // required
	Registry prometheus.Registerer // required
	Logger   zerolog.Logger
	// StallAfter is how long without a completed round Stalled reports
	// (CANARY_STALL_SECONDS); default 15s. Interval is how often a round
	// starts; default 5s, at most a third of StallAfter.
	StallAfter time.Duration
	Interval   time.Duration
	// ClaimLease and ClaimLimit are the claim's, as a socket's drain uses
	// (defaults 30s and 256).
	ClaimLease time.Duration
	ClaimLimit int
}

// canaryRowMaxAge: a canary row this old belongs to a stalled round or a
// replica that died; any replica's next round deletes it.
const canaryRowMaxAge = 5 * time.Minute

// stages are the label values of meshd_canary_failures_total.
var stages = []string{"subscribe", "enqueue", "publish", "wake", "claim"}

// Canary is one replica's delivery canary.
type Canary struct {
	cfg    Config
	log    zerolog.Logger
	target string      // this replica's target in the system mesh
	topic  string      // its wake-up topic (meshd.PeerTopic)
	wakes  chan string // row ids of the wake-ups received
	lastOK atomic.Int64
	rtt    prometheus.Histogram
	fails  *prometheus.CounterVec
}

// New validates cfg and registers the canary's metrics; the stall bound
// runs from here.
func New(cfg Config) (*Canary, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("canary: NodeID required")
	case cfg.Store == nil || cfg.Fanout == nil || cfg.Road == nil || cfg.Registry == nil:
		return nil, errors.New("canary: Store, Fanout, Road and Registry required")
	}
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = 15 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = min(5*time.Second, cfg.StallAfter/3)
	}
	if cfg.ClaimLease <= 0 {
		cfg.ClaimLease = 30 * time.Second
	}
	if cfg.ClaimLimit <= 0 {
		cfg.ClaimLimit = 256
	}
	target := "canary-" + strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f {
			return '_'
		}
		return r
	}, cfg.NodeID)
	cn := &Canary{
		cfg:    cfg,
		log:    cfg.Logger.With().Str("component", "canary").Logger(),
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
	for _, st := range stages {
		cn.fails.WithLabelValues(st)
	}
	for _, c := range []prometheus.Collector{cn.rtt, cn.fails} {
		if err := cfg.Registry.Register(c); err != nil {
			return nil, err
		}
	}
	cn.lastOK.Store(time.Now().UnixNano())
	return cn, nil
}

// onWake is the canary's wake-up subscription; it never blocks.
func (cn *Canary) onWake(data []byte) {
	select {
	case cn.wakes <- string(data):
	default:
	}
}

// Stalled reports whether no round completed within StallAfter, and how
// long ago the last one did (or New ran). Real time: it bounds real round
// trips.
func (cn *Canary) Stalled() (bool, time.Duration) {
	since := time.Since(time.Unix(0, cn.lastOK.Load()))
	return since > cn.cfg.StallAfter, since
}

// Run runs a round every Interval until ctx ends.
func (cn *Canary) Run(ctx context.Context) error {
	var release func()
	defer func() {
		if release != nil {
			release()
		}
	}()
	t := time.NewTicker(cn.cfg.Interval)
	defer t.Stop()
	for {
		if release == nil {
			// Confirmed by the server before the first round publishes.
			r, err := cn.cfg.Fanout.SubscribeAll([]string{cn.topic}, []func([]byte){cn.onWake})
			if err != nil {
				cn.failed(ctx, "subscribe", err)
			} else {
				release = r
			}
		}
		if release != nil {
			cn.round(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// round sends one canary row to this replica and claims it.
func (cn *Canary) round(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, cn.cfg.StallAfter)
	defer cancel()
	for len(cn.wakes) > 0 { // wake-ups of earlier rounds
		<-cn.wakes
	}
	start := time.Now()
	q := &meshd.QueuedMessage{
		MeshID: meshd.SystemMeshID, SenderMemberID: meshd.SystemMemberID, TargetSpec: cn.target,
		Priority: meshd.PriorityNow, SenderName: "delivery canary",
	}
	if err := cn.cfg.Road.Enqueue(rctx, q); err != nil {
		cn.failed(ctx, "enqueue", err)
		return
	}
	var claimed []string
	defer func() { cn.cleanup(ctx, claimed) }()
	if err := cn.cfg.Fanout.Publish(rctx, meshd.PeerTopic(q.MeshID, q.TargetSpec), []byte(q.ID)); err != nil {
		cn.failed(ctx, "publish", err)
		return
	}
	for woken := false; !woken; {
		select {
		case id := <-cn.wakes:
			woken = id == q.ID
		case <-rctx.Done():
			cn.failed(ctx, "wake", context.Cause(rctx))
			return
		}
	}
	rows, err := cn.cfg.Store.Claim(rctx, meshd.ClaimRequest{
		MeshID: meshd.SystemMeshID, ClaimerPresenceID: cn.target, MemberPubkey: cn.target,
		Priorities: []meshd.Priority{meshd.PriorityNow, meshd.PriorityNext, meshd.PriorityLow},
		Lease:      cn.cfg.ClaimLease, Limit: cn.cfg.ClaimLimit,
	})
	if err != nil {
		cn.failed(ctx, "claim", err)
		return
	}
	found := false
	for _, d := range rows {
		claimed = append(claimed, d.ID)
		found = found || d.ID == q.ID
	}
	if !found {
		cn.failed(ctx, "claim", errNotClaimed)
		return
	}
	cn.rtt.Observe(time.Since(start).Seconds())
	cn.lastOK.Store(time.Now().UnixNano())
}

var errNotClaimed = errors.New("canary row not among the claimed rows")

func (cn *Canary) failed(ctx context.Context, stage string, err error) {
	cn.fails.WithLabelValues(stage).Inc()
	if ctx.Err() == nil {
		cn.log.Warn().Err(err).Str("stage", stage).Msg("delivery canary round failed")
	}
}

// cleanup deletes the rows a round claimed and stale canary rows.
func (cn *Canary) cleanup(ctx context.Context, ids []string) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cn.cfg.Store.DeleteCanaryRows(cctx, ids, canaryRowMaxAge); err != nil && ctx.Err() == nil {
		cn.log.Warn().Err(err).Msg("delivery canary cleanup")
	}
}
