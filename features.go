package meshd

import "time"

// Schedule is a scheduled message (docs/protocol.md B.14.3). Lists fill the
// fields list_scheduled reports; the scheduler's due list fills ID, Cron
// and DeliverAt; a firing occurrence fills MeshID, To, Message, Subtype.
type Schedule struct {
	ID         string
	MeshID     string
	To         string
	Message    string // base64 plaintext once fired (B.12)
	Cron       string // "" for a one-shot
	Subtype    string
	DeliverAt  time.Time // the next (or only) occurrence
	CreatedAt  time.Time
	FiredCount int
}

// ScheduleRoute decides what one fired occurrence of s delivers: the queue
// row to insert (nil: nothing, the occurrence still counts as fired) and
// whether it is inserted already delivered (multicast). sender is the
// creating member, the zero Member when it no longer exists. An error rolls
// the firing back.
type ScheduleRoute = func(s Schedule, sender Member) (q *QueuedMessage, delivered bool, err error)

// Clock is a mesh's simulation clock (B.14.4).
type Clock struct {
	MeshID    string
	Speed     float64
	Paused    bool
	Tick      int64
	SimTime   time.Time
	StartedAt time.Time
}

// Stream is a named stream of a mesh (B.14.2) with its live subscriber
// count on every replica.
type Stream struct {
	ID          string
	Name        string
	CreatedBy   string
	CreatedAt   time.Time
	Subscribers int
}
