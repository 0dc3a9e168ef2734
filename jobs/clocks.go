package jobs

import (
	"context"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Mesh clocks (docs/protocol.md B.14.4) with one owner cluster-wide.
// Upstream keeps each clock in one process's memory with a setInterval, so
// two replicas would both tick. Here the clock is a row in Postgres, the
// broker's clock verbs change it from any replica, and this one leader-run
// job advances due clocks with one atomic UPDATE and pushes the tick to the
// whole mesh over the fan-out: one tick per period, on every replica's
// sockets.

const (
	// clockPollMax bounds how late the first tick of a clock set on another
	// replica comes (the fastest period is 600 ms, at speed 100).
	clockPollMax = 250 * time.Millisecond
	clockPollMin = 10 * time.Millisecond
	// idleClockCheck is how often the job pauses clocks of meshes with no
	// live presence left.
	idleClockCheck = 2 * time.Second
)

// ClockStore is the clock job's part of the database. Ticks are advanced by
// one atomic UPDATE on the database's clock, so there is one tick per
// period however many replicas run the job.
type ClockStore interface {
	// AdvanceClocks ticks every due running clock once and returns the
	// clocks that ticked, after the change committed.
	AdvanceClocks(ctx context.Context) ([]meshd.Clock, error)
	// PauseIdleClocks pauses clocks of meshes with no live presence.
	PauseIdleClocks(ctx context.Context) (int64, error)
	// NextClockTickIn is how long until the earliest running clock's next
	// tick; ok false when none runs.
	NextClockTickIn(ctx context.Context) (d time.Duration, ok bool, err error)
}

// tickEvent is the eventData of the tick system push (B.4.3).
type tickEvent struct {
	Tick    int64   `json:"tick"`
	SimTime string  `json:"simTime"`
	Speed   float64 `json:"speed"`
}

// Clocks advances mesh clocks until ctx ends. It also pauses the clocks of
// meshes whose last presence is gone (B.14.4 auto-pause).
func (j *Jobs) Clocks(ctx context.Context) error {
	var lastIdle time.Time
	return poll(ctx, func(ctx context.Context) time.Duration {
		if time.Since(lastIdle) >= idleClockCheck {
			lastIdle = time.Now()
			j.pauseIdleClocks(ctx)
		}
		j.AdvanceClocks(ctx)
		d, ok, err := j.cfg.Store.NextClockTickIn(ctx)
		if err != nil || !ok {
			return clockPollMax
		}
		return min(max(d, clockPollMin), clockPollMax)
	})
}

// AdvanceClocks runs one pass of the clock job: every due clock ticks once
// and its mesh gets the tick push (priority low) on every replica. Returns
// the number of ticks.
func (j *Jobs) AdvanceClocks(ctx context.Context) int {
	ticks, err := j.cfg.Store.AdvanceClocks(ctx)
	if err != nil && ctx.Err() == nil {
		j.log.Warn().Err(err).Msg("advance clocks")
	}
	for _, c := range ticks {
		ev := tickEvent{Tick: c.Tick, SimTime: wire.FormatISOTime(c.SimTime), Speed: c.Speed}
		if err := j.publishSystem(ctx, c.MeshID, "tick", ev, ""); err != nil {
			j.log.Warn().Err(err).Str("mesh_id", c.MeshID).Msg("publish tick")
		}
	}
	return len(ticks)
}

func (j *Jobs) pauseIdleClocks(ctx context.Context) {
	n, err := j.cfg.Store.PauseIdleClocks(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		j.log.Warn().Err(err).Msg("pause idle clocks")
	case n > 0:
		j.log.Info().Int64("clocks", n).Msg("paused clocks of meshes with no live presence")
	}
}
