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
	// ListStreams returns the streams of meshID, oldest first, with the
	// number of subscribers whose presence is live and still held by the
	// socket that subscribed.
	ListStreams(ctx context.Context, meshID string) ([]meshd.Stream, error)
}

// ScheduleStore holds scheduled messages (B.14.3); the scheduler job
// (package jobs) fires them.
type ScheduleStore interface {
	// CreateSchedule stores a scheduled message and returns its id; cron
	// and subtype may be "".
	CreateSchedule(ctx context.Context, meshID, presenceID, memberID, to, message string, deliverAt time.Time, cron, subtype string) (string, error)
	// ListSchedules returns the pending schedules of meshID created by
	// presenceID or memberID, soonest first.
	ListSchedules(ctx context.Context, meshID, presenceID, memberID string) ([]meshd.Schedule, error)
	// CancelSchedule cancels memberID's pending schedule id; false when
	// there is none.
	CancelSchedule(ctx context.Context, meshID, memberID, id string) (bool, error)
}

// ClockStore holds one simulation clock per mesh (B.14.4); the clock job
// (package jobs) advances them.
type ClockStore interface {
	// SetClock creates the clock (tick 0, sim time = now, running) or sets
	// its speed, restarting a running clock's period.
	SetClock(ctx context.Context, meshID string, speed float64) (meshd.Clock, error)
	// PauseClock, ResumeClock and GetClock return meshd.ErrNotFound when
	// the mesh has no clock.
	PauseClock(ctx context.Context, meshID string) (meshd.Clock, error)
	ResumeClock(ctx context.Context, meshID string) (meshd.Clock, error)
	GetClock(ctx context.Context, meshID string) (meshd.Clock, error)
}
