// Package jobs holds the cluster's leader-only jobs: the presence and queue
// upkeep, the status sweeps, the scheduler and the mesh clocks. Each is a
// func(ctx) error that runs until ctx ends; cmd/meshd runs each one under
// its own ha.Leader, so one replica runs it at a time and another takes
// over when that replica dies. Every statement they run is also safe when
// two run at once during a leadership handover (docs/architecture.md).
//
// The jobs never touch a socket. What reaches clients goes over the fan-out
// as a meshd.MeshEvent (peer_left, tick) or takes the road of a send through
// the broker's one route (scheduled messages, the Router interface). Each
// job declares the small interface of the store it needs next to it.
package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Store is everything the jobs ask of the database.
type Store interface {
	UpkeepStore
	StatusStore
	ScheduleStore
	ClockStore
}

// Publisher sends to every subscriber of a fan-out topic on every replica
// (fanout.Bus).
type Publisher interface {
	Publish(ctx context.Context, topic string, data []byte) error
}

// Auditor records audit-chain events (audit.Writer).
type Auditor interface {
	Record(ctx context.Context, meshID string, ev meshd.AuditEvent)
}

// Config configures the jobs. Zero durations take the documented defaults.
type Config struct {
	Store    Store                 // required
	Fanout   Publisher             // required
	Audit    Auditor               // required
	Router   Router                // required: the broker's route (scheduled messages)
	Registry prometheus.Registerer // required
	Logger   zerolog.Logger

	// SweepInterval is the upkeep's cadence; a node that missed three
	// heartbeats (the broker heartbeats every SweepInterval) is dead.
	// Default 5s.
	SweepInterval time.Duration
	// Grace is the lease a presence of a dead node or a stale socket gets;
	// default 90s.
	Grace time.Duration
	// StatusTTL flips working to idle after this long; default 60s.
	StatusTTL time.Duration
	// HookFreshWindow keeps a fresh hook status out of the TTL sweep;
	// default 30s.
	HookFreshWindow time.Duration
	Now             func() time.Time // default time.Now
}

// Jobs are the leader-only jobs of one replica, sharing its metrics.
type Jobs struct {
	cfg Config
	log zerolog.Logger
	met *metrics
}

// New validates cfg and registers the jobs' metrics.
func New(cfg Config) (*Jobs, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("jobs: Store required")
	case cfg.Fanout == nil:
		return nil, errors.New("jobs: Fanout required")
	case cfg.Audit == nil:
		return nil, errors.New("jobs: Audit required")
	case cfg.Router == nil:
		return nil, errors.New("jobs: Router required")
	case cfg.Registry == nil:
		return nil, errors.New("jobs: Registry required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.SweepInterval, 5*time.Second)
	def(&cfg.Grace, 90*time.Second)
	def(&cfg.StatusTTL, 60*time.Second)
	def(&cfg.HookFreshWindow, 30*time.Second)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	met, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	return &Jobs{cfg: cfg, log: cfg.Logger.With().Str("component", "jobs").Logger(), met: met}, nil
}

// All names every job (the name keys its leader lock and its
// broker_leader{singleton} series).
func (j *Jobs) All() map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"status_sweeps": j.StatusSweeps,
		"upkeep":        j.Upkeep,
		"scheduler":     j.Scheduler,
		"clocks":        j.Clocks,
	}
}

// publishSystem sends a B.4.3 system push to every socket of the mesh on
// every replica but exclMember's.
func (j *Jobs) publishSystem(ctx context.Context, meshID, event string, data any, exclMember string) error {
	push, err := wire.SystemPush(meshID, event, data, j.cfg.Now())
	if err != nil {
		return err
	}
	ev := meshd.MeshEvent{Kind: meshd.MeshEventSystem, Push: push, ExcludeMemberPubkey: exclMember}
	raw, err := ev.Encode()
	if err != nil {
		return err
	}
	return j.cfg.Fanout.Publish(ctx, meshd.MeshTopic(meshID), raw)
}

// every runs pass at once and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, pass func(context.Context)) error {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// poll runs pass, then waits what it returns, until ctx ends.
func poll(ctx context.Context, pass func(context.Context) time.Duration) error {
	for {
		wait := pass(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
