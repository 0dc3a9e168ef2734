package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
)

// Mesh clocks (docs/protocol.md B.14.4). All times come from the database's
// clock, so however many replicas run the clock job and whatever their
// local clocks say, a tick is due at one instant cluster-wide.

const clockCols = `speed, paused, tick, sim_time, started_at`

// tickIntervalSQL is one tick's real-time period: 60 s of sim time / speed.
const tickIntervalSQL = `make_interval(secs => 60.0 / speed)`

func scanClock(meshID string, row pgx.Row) (meshd.Clock, error) {
	c := meshd.Clock{MeshID: meshID}
	if err := row.Scan(&c.Speed, &c.Paused, &c.Tick, &c.SimTime, &c.StartedAt); err != nil {
		return meshd.Clock{}, notFound(err)
	}
	return c, nil
}

// SetClock creates meshID's clock at speed (tick 0, sim time and start =
// now, running) or sets the speed of the existing one. A running clock's
// next tick is rescheduled one period from now (B.14.4 restarts the
// interval); a paused one stays paused. speed must be in [1, 100].
func (s *Store) SetClock(ctx context.Context, meshID string, speed float64) (meshd.Clock, error) {
	row := s.pool.QueryRow(ctx, `
INSERT INTO mesh.clock AS c (mesh_id, speed, paused, tick, sim_time, started_at, next_tick_at)
VALUES ($1, $2::float8, false, 0, now(), now(), now() + make_interval(secs => 60.0 / $2::float8))
ON CONFLICT (mesh_id) DO UPDATE SET speed = EXCLUDED.speed,
	next_tick_at = CASE WHEN c.paused THEN NULL ELSE now() + make_interval(secs => 60.0 / EXCLUDED.speed) END,
	updated_at = now()
RETURNING `+clockCols, meshID, speed)
	c, err := scanClock(meshID, row)
	if err != nil {
		return c, fmt.Errorf("set clock: %w", err)
	}
	return c, nil
}

// PauseClock pauses meshID's clock (a paused one is left as is).
// meshd.ErrNotFound when the mesh has no clock.
func (s *Store) PauseClock(ctx context.Context, meshID string) (meshd.Clock, error) {
	row := s.pool.QueryRow(ctx, `UPDATE mesh.clock SET paused = true, next_tick_at = NULL, updated_at = now()
WHERE mesh_id = $1 RETURNING `+clockCols, meshID)
	c, err := scanClock(meshID, row)
	if err != nil {
		return c, fmt.Errorf("pause clock: %w", err)
	}
	return c, nil
}

// ResumeClock resumes a paused clock, its next tick one period from now (a
// running one is left as is). meshd.ErrNotFound when the mesh has no clock.
func (s *Store) ResumeClock(ctx context.Context, meshID string) (meshd.Clock, error) {
	row := s.pool.QueryRow(ctx, `UPDATE mesh.clock SET paused = false,
	next_tick_at = CASE WHEN paused THEN now() + `+tickIntervalSQL+` ELSE next_tick_at END, updated_at = now()
WHERE mesh_id = $1 RETURNING `+clockCols, meshID)
	c, err := scanClock(meshID, row)
	if err != nil {
		return c, fmt.Errorf("resume clock: %w", err)
	}
	return c, nil
}

// GetClock reports meshID's clock; meshd.ErrNotFound when it has none.
func (s *Store) GetClock(ctx context.Context, meshID string) (meshd.Clock, error) {
	row := s.pool.QueryRow(ctx, `SELECT `+clockCols+` FROM mesh.clock WHERE mesh_id = $1`, meshID)
	c, err := scanClock(meshID, row)
	if err != nil {
		return c, fmt.Errorf("get clock: %w", err)
	}
	return c, nil
}

// AdvanceClocks ticks every running clock whose next tick is due, in one
// UPDATE: tick+1, sim time +60 s, next tick one period later. Each due
// period yields exactly one tick however many callers run at once: a
// concurrent UPDATE waits on the row lock, then re-checks next_tick_at and
// skips the row. A clock more than a period behind (the job was down) skips
// the missed periods instead of bursting: its next tick is one period from
// now. It returns the clocks that ticked (MeshID, Tick, SimTime, Speed set),
// after the UPDATE committed.
func (s *Store) AdvanceClocks(ctx context.Context) ([]meshd.Clock, error) {
	rows, err := s.pool.Query(ctx, `
UPDATE mesh.clock SET tick = tick + 1, sim_time = sim_time + interval '60 seconds',
	next_tick_at = CASE WHEN next_tick_at + `+tickIntervalSQL+` > now() THEN next_tick_at + `+tickIntervalSQL+`
		ELSE now() + `+tickIntervalSQL+` END,
	updated_at = now()
WHERE NOT paused AND next_tick_at <= now()
RETURNING mesh_id, tick, sim_time, speed`)
	if err != nil {
		return nil, fmt.Errorf("advance clocks: %w", err)
	}
	ticks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (meshd.Clock, error) {
		var c meshd.Clock
		err := r.Scan(&c.MeshID, &c.Tick, &c.SimTime, &c.Speed)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("advance clocks: %w", err)
	}
	return ticks, nil
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
