package jobs

import (
	"context"
	"encoding/base64"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/cron"
)

// Scheduled messages (docs/protocol.md B.14.3, A.3-18). The rows live in
// Postgres (the broker's schedule verbs write them) and are fired by this
// one leader-run job, so they keep firing across restarts and replica
// deaths. Each occurrence is claimed with a compare-and-set in the store, in
// the same transaction as its queue row: exactly once across the cluster
// even if two schedulers overlap during a leadership change. An occurrence
// is delivered as the creating member, whether its socket is on this
// replica, another one, or gone.

const (
	// scheduleBatch bounds one pass; a full batch is followed by another
	// pass at once.
	scheduleBatch = 100
	// schedulePollMax bounds how late a schedule created on another replica
	// (which cannot wake the leader) fires.
	schedulePollMax = time.Second
	schedulePollMin = 20 * time.Millisecond
	// pruneStreamsEvery is the cadence of the stream-subscription prune the
	// scheduler job also runs (rows left by killed replicas).
	pruneStreamsEvery = time.Minute
)

// ScheduleStore is the scheduler's part of the database. Every time it
// compares against is the database's clock.
type ScheduleStore interface {
	// DueSchedules returns up to limit pending schedules that are due (ID,
	// Cron, DeliverAt) and the database's now.
	DueSchedules(ctx context.Context, limit int) (due []meshd.Schedule, now time.Time, err error)
	// NextScheduleIn is how long until the earliest pending schedule is
	// due; ok false when none is pending.
	NextScheduleIn(ctx context.Context) (d time.Duration, ok bool, err error)
	// FireSchedule claims the occurrence of id due at due exactly once
	// across the cluster (compare-and-set on deliver_at), moving a cron row
	// on to next (zero: no more occurrences) and marking a one-shot fired;
	// in the same transaction it inserts the queue row route returns (nil:
	// nothing). fired is false when the occurrence was not this caller's.
	FireSchedule(ctx context.Context, id string, due, next time.Time, route meshd.ScheduleRoute) (fired bool, err error)
	// PruneStreamSubscriptions deletes stream subscriptions whose socket is
	// gone.
	PruneStreamSubscriptions(ctx context.Context) (int64, error)
}

// Router is the broker's road of a send (broker/delivery.go), for a message
// sent on a member's behalf by the scheduler.
type Router interface {
	// Route decides where target goes for from (B.4.1 with A.3-6 and
	// B.7): a multicast, or one direct recipient whose grants allow dm.
	// refused is the reason nothing is delivered ("" when routed); err is
	// the broker's failure.
	Route(ctx context.Context, meshID string, from meshd.Member, target string) (multicast bool, refused string, err error)
	// Announce wakes the recipient of a committed row, or publishes a
	// multicast's push (with subtype) to the mesh.
	Announce(ctx context.Context, q *meshd.QueuedMessage, from meshd.Member, multicast bool, subtype string)
}

// Scheduler fires due scheduled messages until ctx ends. It also prunes
// stale stream subscriptions.
func (j *Jobs) Scheduler(ctx context.Context) error {
	var lastPrune time.Time
	return poll(ctx, func(ctx context.Context) time.Duration {
		n := j.FireDueSchedules(ctx)
		if time.Since(lastPrune) >= pruneStreamsEvery {
			lastPrune = time.Now()
			j.pruneStreamSubscriptions(ctx)
		}
		if n >= scheduleBatch {
			return schedulePollMin
		}
		d, ok, err := j.cfg.Store.NextScheduleIn(ctx)
		if err != nil || !ok {
			return schedulePollMax
		}
		return min(max(d, schedulePollMin), schedulePollMax)
	})
}

// FireDueSchedules runs one scheduler pass and returns how many due
// occurrences it looked at (fired here or by a concurrent scheduler).
func (j *Jobs) FireDueSchedules(ctx context.Context) int {
	due, now, err := j.cfg.Store.DueSchedules(ctx, scheduleBatch)
	if err != nil {
		if ctx.Err() == nil {
			j.log.Warn().Err(err).Msg("scheduler: due schedules")
		}
		return 0
	}
	for _, d := range due {
		j.fireSchedule(ctx, d, now)
	}
	return len(due)
}

// fireSchedule fires the occurrence of d due at d.DeliverAt. A cron row
// moves on to its next occurrence after now; missed occurrences (the job
// was down) collapse into this one rather than bursting. The occurrence
// takes the road of a send as the member who scheduled it (B.12: the body
// is base64 plaintext, nonce ""), with priority now.
func (j *Jobs) fireSchedule(ctx context.Context, d meshd.Schedule, now time.Time) {
	log := j.log.With().Str("scheduled_id", d.ID).Logger()
	var next time.Time
	if d.Cron != "" {
		sched, err := cron.Parse(d.Cron)
		if err != nil {
			log.Warn().Err(err).Msg("scheduler: stored cron does not parse; firing it one last time")
		} else {
			next, _ = sched.Next(now) // zero: no occurrence within a year, the row ends
		}
	}
	var (
		out       *meshd.QueuedMessage
		from      meshd.Member
		multicast bool
	)
	fired, err := j.cfg.Store.FireSchedule(ctx, d.ID, d.DeliverAt, next,
		func(sc meshd.Schedule, sender meshd.Member) (*meshd.QueuedMessage, bool, error) {
			out, from = nil, sender
			if sender.ID == "" || sender.RevokedAt != nil {
				log.Info().Str("mesh_id", sc.MeshID).Msg("scheduled message not delivered: sender is no longer a member")
				return nil, false, nil
			}
			var refused string
			var err error
			if multicast, refused, err = j.cfg.Router.Route(ctx, sc.MeshID, sender, sc.To); err != nil || refused != "" {
				if refused != "" {
					log.Info().Str("mesh_id", sc.MeshID).Str("reason", refused).Msg("scheduled message not delivered")
				}
				return nil, false, err
			}
			out = &meshd.QueuedMessage{
				MeshID: sc.MeshID, SenderMemberID: sender.ID, TargetSpec: sc.To, Priority: meshd.PriorityNow,
				Nonce: "", Ciphertext: base64.StdEncoding.EncodeToString([]byte(sc.Message)), SenderName: sender.DisplayName,
			}
			return out, multicast, nil
		})
	if err != nil {
		if ctx.Err() == nil {
			log.Warn().Err(err).Msg("scheduler: fire")
		}
		return
	}
	if fired && out != nil {
		j.cfg.Router.Announce(ctx, out, from, multicast, "reminder")
	}
}

func (j *Jobs) pruneStreamSubscriptions(ctx context.Context) {
	n, err := j.cfg.Store.PruneStreamSubscriptions(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		j.log.Warn().Err(err).Msg("prune stream subscriptions")
	case n > 0:
		j.log.Info().Int64("rows", n).Msg("pruned stale stream subscriptions")
	}
}
