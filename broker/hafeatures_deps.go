package broker

import (
	"context"
	"time"

	"github.com/meshd/meshd"
)

// HAFeatures is what streams, scheduled messages and mesh clocks (docs/protocol.md
// B.14.2-B.14.4, upstream's "broken under HA" list) ask of the database.
type HAFeatures interface {
	StreamStore
	ScheduleStore
	ClockStore
}

// StreamStore holds stream names and one subscription row per (stream,
// presence), so list_streams counts subscribers on every replica. Stream
// data never touches it.
type StreamStore interface {
	// CreateStream inserts stream name of meshID or returns the existing
	// one's id (insert-or-get).
	CreateStream(ctx context.Context, meshID, name, createdBy string) (id string, err error)
	// SubscribeStream records socketID's (holding presenceID) subscription.
	SubscribeStream(ctx context.Context, meshID, name, presenceID, socketID string) error
	// UnsubscribeStream deletes it.
	UnsubscribeStream(ctx context.Context, meshID, name, presenceID, socketID string) error
	// DropSocketStreams deletes every subscription of a closed socket.
	DropSocketStreams(ctx context.Context, presenceID, socketID string) error
	// ListStreams calls fn per stream of meshID, oldest first, with the
	// number of subscribers whose presence is live and still held by the
	// socket that subscribed.
	ListStreams(ctx context.Context, meshID string, fn func(id, name, createdBy string, createdAt time.Time, subscribers int)) error
	// PruneStreamSubscriptions deletes rows whose socket is gone.
	PruneStreamSubscriptions(ctx context.Context) (int64, error)
}

// ScheduleStore holds scheduled messages (B.14.3). Every time it compares
// against is the database's clock.
type ScheduleStore interface {
	// CreateSchedule stores a scheduled message and returns its id; cron
	// and subtype may be "".
	CreateSchedule(ctx context.Context, meshID, presenceID, memberID, to, message string, deliverAt time.Time, cron, subtype string) (string, error)
	// ListSchedules calls fn for each pending schedule of meshID created by
	// presenceID or memberID, soonest first (cron "" for one-shots).
	ListSchedules(ctx context.Context, meshID, presenceID, memberID string,
		fn func(id, to, message, cron string, deliverAt, createdAt time.Time, firedCount int)) error
	// CancelSchedule cancels memberID's pending schedule id; false when
	// there is none.
	CancelSchedule(ctx context.Context, meshID, memberID, id string) (bool, error)
	// DueSchedules calls fn for up to limit pending schedules that are due
	// and returns the database's now.
	DueSchedules(ctx context.Context, limit int, fn func(id, cron string, deliverAt time.Time)) (now time.Time, err error)
	// NextScheduleIn is how long until the earliest pending schedule is
	// due; ok false when none is pending.
	NextScheduleIn(ctx context.Context) (d time.Duration, ok bool, err error)
	// FireSchedule claims the occurrence of id due at due exactly once
	// across the cluster (compare-and-set on deliver_at), moving a cron row
	// on to next (zero: no more occurrences) and marking a one-shot fired;
	// in the same transaction it inserts the queue row route returns (nil:
	// nothing). fired is false when the occurrence was not this caller's.
	FireSchedule(ctx context.Context, id string, due, next time.Time,
		route func(meshID string, sender meshd.Member, to, message, subtype string) (q *meshd.QueuedMessage, delivered bool, err error)) (fired bool, err error)
}

// clockFunc receives a mesh clock's state.
type clockFunc = func(speed float64, paused bool, tick int64, simTime, startedAt time.Time)

// ClockStore holds one simulation clock per mesh (B.14.4). Ticks are
// advanced by one atomic UPDATE on the database's clock, so there is one
// tick per period however many replicas run the clock job.
type ClockStore interface {
	// SetClock creates the clock (tick 0, sim time = now, running) or sets
	// its speed, restarting a running clock's period.
	SetClock(ctx context.Context, meshID string, speed float64, fn clockFunc) error
	// PauseClock, ResumeClock and GetClock return meshd.ErrNotFound when
	// the mesh has no clock.
	PauseClock(ctx context.Context, meshID string, fn clockFunc) error
	ResumeClock(ctx context.Context, meshID string, fn clockFunc) error
	GetClock(ctx context.Context, meshID string, fn clockFunc) error
	// AdvanceClocks ticks every due running clock once and calls fn per
	// tick after the change committed.
	AdvanceClocks(ctx context.Context, fn func(meshID string, tick int64, simTime time.Time, speed float64)) (int, error)
	// PauseIdleClocks pauses clocks of meshes with no live presence.
	PauseIdleClocks(ctx context.Context) (int64, error)
	// NextClockTickIn is how long until the earliest running clock's next
	// tick; ok false when none runs.
	NextClockTickIn(ctx context.Context) (d time.Duration, ok bool, err error)
}
