package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Mesh clocks (docs/protocol.md B.14.4). All times come from the database's
// clock, so however many replicas run the clock job and whatever their
// local clocks say, a tick is due at one instant cluster-wide.

// ClockFunc receives a clock's state.
type ClockFunc = func(speed float64, paused bool, tick int64, simTime, startedAt time.Time)

const clockCols = `speed, paused, tick, sim_time, started_at`

// tickIntervalSQL is one tick's real-time period: 60 s of sim time / speed.
const tickIntervalSQL = `make_interval(secs => 60.0 / speed)`

func scanClock(row pgx.Row, fn ClockFunc) error {
	var (
		speed            float64
		paused           bool
		tick             int64
		simTime, started time.Time
	)
	if err := row.Scan(&speed, &paused, &tick, &simTime, &started); err != nil {
		return notFound(err)
	}
	fn(speed, paused, tick, simTime, started)
	return nil
}

// SetClock creates meshID's clock at speed (tick 0, sim time and start =
// now, running) or sets the speed of the existing one. A running clock's
// next tick is rescheduled one period from now (B.14.4 restarts the
// interval); a paused one stays paused. speed must be in [1, 100].
func (s *Store) SetClock(ctx context.Context, meshID string, speed float64, fn ClockFunc) error {
	row := s.pool.QueryRow(ctx, `
INSERT INTO mesh.clock AS c (mesh_id, speed, paused, tick, sim_time, started_at, next_tick_at)
VALUES ($1, $2::float8, false, 0, now(), now(), now() + make_interval(secs => 60.0 / $2::float8))
ON CONFLICT (mesh_id) DO UPDATE SET speed = EXCLUDED.speed,
	next_tick_at = CASE WHEN c.paused THEN NULL ELSE now() + make_interval(secs => 60.0 / EXCLUDED.speed) END,
	updated_at = now()
RETURNING `+clockCols, meshID, speed)
	if err := scanClock(row, fn); err != nil {
		return fmt.Errorf("set clock: %w", err)
	}
	return nil
}

// PauseClock pauses meshID's clock (a paused one is left as is).
// meshd.ErrNotFound when the mesh has no clock.
func (s *Store) PauseClock(ctx context.Context, meshID string, fn ClockFunc) error {
	row := s.pool.QueryRow(ctx, `UPDATE mesh.clock SET paused = true, next_tick_at = NULL, updated_at = now()
WHERE mesh_id = $1 RETURNING `+clockCols, meshID)
	if err := scanClock(row, fn); err != nil {
		return fmt.Errorf("pause clock: %w", err)
	}
	return nil
}

// ResumeClock resumes a paused clock, its next tick one period from now (a
// running one is left as is). meshd.ErrNotFound when the mesh has no clock.
func (s *Store) ResumeClock(ctx context.Context, meshID string, fn ClockFunc) error {
	row := s.pool.QueryRow(ctx, `UPDATE mesh.clock SET paused = false,
	next_tick_at = CASE WHEN paused THEN now() + `+tickIntervalSQL+` ELSE next_tick_at END, updated_at = now()
WHERE mesh_id = $1 RETURNING `+clockCols, meshID)
	if err := scanClock(row, fn); err != nil {
		return fmt.Errorf("resume clock: %w", err)
	}
	return nil
}

// GetClock reports meshID's clock; meshd.ErrNotFound when it has none.
func (s *Store) GetClock(ctx context.Context, meshID string, fn ClockFunc) error {
	row := s.pool.QueryRow(ctx, `SELECT `+clockCols+` FROM mesh.clock WHERE mesh_id = $1`, meshID)
	if err := scanClock(row, fn); err != nil {
		return fmt.Errorf("get clock: %w", err)
	}
	return nil
}

// AdvanceClocks ticks every running clock whose next tick is due, in one
// UPDATE: tick+1, sim time +60 s, next tick one period later. Each due
// period yields exactly one tick however many callers run at once: a
// concurrent UPDATE waits on the row lock, then re-checks next_tick_at and
// skips the row. A clock more than a period behind (the job was down) skips
// the missed periods instead of bursting: its next tick is one period from
// now. fn is called for each tick made, after the UPDATE committed.
func (s *Store) AdvanceClocks(ctx context.Context, fn func(meshID string, tick int64, simTime time.Time, speed float64)) (int, error) {
	rows, err := s.pool.Query(ctx, `
UPDATE mesh.clock SET tick = tick + 1, sim_time = sim_time + interval '60 seconds',
	next_tick_at = CASE WHEN next_tick_at + `+tickIntervalSQL+` > now() THEN next_tick_at + `+tickIntervalSQL+`
		ELSE now() + `+tickIntervalSQL+` END,
	updated_at = now()
WHERE NOT paused AND next_tick_at <= now()
RETURNING mesh_id, tick, sim_time, speed`)
	if err != nil {
		return 0, fmt.Errorf("advance clocks: %w", err)
	}
	type tick struct {
		meshID  string
		tick    int64
		simTime time.Time
		speed   float64
	}
	var ticks []tick
	var t tick
	_, err = pgx.ForEachRow(rows, []any{&t.meshID, &t.tick, &t.simTime, &t.speed}, func() error {
		ticks = append(ticks, t)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("advance clocks: %w", err)
	}
	for _, t := range ticks {
		fn(t.meshID, t.tick, t.simTime, t.speed)
	}
	return len(ticks), nil
}

// PauseIdleClocks pauses the running clocks of meshes with no live presence
// on any replica (grace leases count as live: B.14.4 pauses when the last
// connection is evicted). Returns how many were paused.
func (s *Store) PauseIdleClocks(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
UPDATE mesh.clock c SET paused = true, next_tick_at = NULL, updated_at = now()
WHERE NOT c.paused AND NOT EXISTS (
	SELECT 1 FROM mesh.presence p WHERE p.mesh_id = c.mesh_id AND p.disconnected_at IS NULL)`)
	if err != nil {
		return 0, fmt.Errorf("pause idle clocks: %w", err)
	}
	return tag.RowsAffected(), nil
}

// NextClockTickIn reports how long until the earliest running clock's next
// tick by the database's clock (≤ 0: due now); ok is false when no clock
// runs.
func (s *Store) NextClockTickIn(ctx context.Context) (d time.Duration, ok bool, err error) {
	var secs *float64
	err = s.pool.QueryRow(ctx, `SELECT EXTRACT(EPOCH FROM min(next_tick_at) - now())::float8
FROM mesh.clock WHERE NOT paused`).Scan(&secs)
	if err != nil {
		return 0, false, fmt.Errorf("next clock tick: %w", err)
	}
	if secs == nil {
		return 0, false, nil
	}
	return time.Duration(*secs * float64(time.Second)), true, nil
}
