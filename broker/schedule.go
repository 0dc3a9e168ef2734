package broker

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/cron"
)

// Scheduled messages (docs/protocol.md B.14.3, A.3-18). The rows live in
// Postgres and are fired by one leader-run job (RunScheduler), so they keep
// firing across restarts and replica deaths. Each occurrence is claimed with
// a compare-and-set in the store, in the same transaction as its queue row:
// exactly once across the cluster even if two schedulers overlap during a
// leadership change. An occurrence is delivered as the creating member,
// whether its socket is on this replica, another one, or gone (upstream
// skipped it unless the creator's socket was on the firing node).

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
	// maxSubtype bounds the stored subtype label.
	maxSubtype = 64
	// maxDeliverAt (ms) is 9999-12-31T23:59:59.999Z: later times do not
	// fit a timestamptz.
	maxDeliverAt = 253402300799999
)

type scheduleFrame struct {
	Type        string   `json:"type"`
	To          string   `json:"to"`
	Message     *string  `json:"message"`
	DeliverAt   *float64 `json:"deliverAt"` // ms since the epoch
	Subtype     string   `json:"subtype"`
	Cron        string   `json:"cron"`
	ScheduledID string   `json:"scheduledId"`
}

// handleScheduleVerb dispatches schedule, list_scheduled and
// cancel_scheduled.
func (s *Server) handleScheduleVerb(ctx context.Context, c *conn, data []byte, reqID string) error {
	var m scheduleFrame
	if err := decode(data, &m, "schedule frame"); err != nil {
		return err
	}
	switch m.Type {
	case "schedule":
		return s.schedule(ctx, c, &m, reqID)
	case "list_scheduled":
		return s.listScheduled(ctx, c, reqID)
	default:
		return s.cancelScheduled(ctx, c, m.ScheduledID, reqID)
	}
}

// schedule stores the row and acks with the first fire time: the given
// deliverAt for a one-shot (in the past: fires at once), the next cron
// occurrence after now (UTC, A.3-11) for a cron schedule.
func (s *Server) schedule(ctx context.Context, c *conn, m *scheduleFrame, reqID string) error {
	switch {
	case m.To == "":
		return invalid("schedule: to required")
	case m.Message == nil:
		return invalid("schedule: message required")
	case len(m.Subtype) > maxSubtype:
		return invalid("schedule: subtype longer than %d bytes", maxSubtype)
	case strings.HasPrefix(m.To, "#"):
		c.sendError("unsupported_target", errTopics, reqID)
		return nil
	}
	// Same size rule as send (B.4.1 step 2) on what will be queued.
	if n := base64.StdEncoding.EncodedLen(len(*m.Message)) + jsLen(m.To); n > s.cfg.MaxMessageBytes {
		return invalid("schedule: payload too large: %d bytes > MAX_MESSAGE_BYTES=%d", n, s.cfg.MaxMessageBytes)
	}
	var at time.Time
	if m.Cron != "" {
		sched, err := cron.Parse(m.Cron)
		var ok bool
		if err == nil {
			at, ok = sched.Next(s.cfg.Now())
		}
		if !ok {
			c.sendError("invalid_cron", "Invalid cron expression: "+m.Cron, reqID)
			return nil
		}
	} else {
		if m.DeliverAt == nil {
			return invalid("schedule: deliverAt (ms) or cron required")
		}
		if *m.DeliverAt < 0 || *m.DeliverAt > maxDeliverAt {
			return invalid("schedule: deliverAt out of range")
		}
		at = time.UnixMilli(int64(*m.DeliverAt))
	}
	pres, member, _ := c.snapshot()
	id, err := s.cfg.Store.CreateSchedule(ctx, pres.MeshID, pres.ID, member.ID, m.To, *m.Message, at, m.Cron, m.Subtype)
	if err != nil {
		return fmt.Errorf("schedule failed: %w", err)
	}
	ack := map[string]any{"type": "scheduled_ack", "scheduledId": id, "deliverAt": at.UnixMilli()}
	if m.Cron != "" {
		ack["cron"] = m.Cron
	}
	c.send(withReqID(ack, reqID))
	return nil
}

func (s *Server) listScheduled(ctx context.Context, c *conn, reqID string) error {
	pres, member, _ := c.snapshot()
	msgs := []map[string]any{}
	err := s.cfg.Store.ListSchedules(ctx, pres.MeshID, pres.ID, member.ID,
		func(id, to, message, expr string, deliverAt, createdAt time.Time, fired int) {
			e := map[string]any{"id": id, "to": to, "message": message,
				"deliverAt": deliverAt.UnixMilli(), "createdAt": createdAt.UnixMilli()}
			if expr != "" {
				e["cron"], e["firedCount"] = expr, fired
			}
			msgs = append(msgs, e)
		})
	if err != nil {
		return fmt.Errorf("list_scheduled failed: %w", err)
	}
	c.send(withReqID(map[string]any{"type": "scheduled_list", "messages": msgs}, reqID))
	return nil
}

// cancelScheduled cancels one of the member's pending schedules; ok is
// false when there is none with that id.
func (s *Server) cancelScheduled(ctx context.Context, c *conn, id, reqID string) error {
	if id == "" {
		return invalid("cancel_scheduled: scheduledId required")
	}
	pres, member, _ := c.snapshot()
	ok, err := s.cfg.Store.CancelSchedule(ctx, pres.MeshID, member.ID, id)
	if err != nil {
		return fmt.Errorf("cancel_scheduled failed: %w", err)
	}
	c.send(withReqID(map[string]any{"type": "cancel_scheduled_ack", "scheduledId": id, "ok": ok}, reqID))
	return nil
}

// RunScheduler fires due scheduled messages until ctx ends. It must run
// under leadership (cmd/meshd wires an ha.Leader around it) so one replica
// polls; a second one running meanwhile (leadership handover) cannot fire an
// occurrence twice. It also prunes stale stream subscriptions.
func (s *Server) RunScheduler(ctx context.Context) {
	var lastPrune time.Time
	for {
		n := s.FireDueSchedules(ctx)
		if time.Since(lastPrune) >= pruneStreamsEvery {
			lastPrune = time.Now()
			s.pruneStreamSubscriptions(ctx)
		}
		wait := schedulePollMin
		if n < scheduleBatch {
			wait = s.nextScheduleWait(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// FireDueSchedules runs one scheduler pass and returns how many due
// occurrences it looked at (fired here or by a concurrent scheduler).
func (s *Server) FireDueSchedules(ctx context.Context) int {
	type due struct {
		id, expr string
		at       time.Time
	}
	var list []due
	now, err := s.cfg.Store.DueSchedules(ctx, scheduleBatch, func(id, expr string, at time.Time) {
		list = append(list, due{id, expr, at})
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("scheduler: due schedules")
		}
		return 0
	}
	for _, d := range list {
		s.fireSchedule(ctx, d.id, d.expr, d.at, now)
	}
	return len(list)
}

// fireSchedule fires the occurrence of id due at due. A cron row moves on
// to its next occurrence after now; missed occurrences (the job was down)
// collapse into this one rather than bursting. The occurrence takes the
// road of a send (delivery.go) as the member who scheduled it (B.12: the
// body is base64 plaintext, nonce ""), with priority now.
func (s *Server) fireSchedule(ctx context.Context, id, expr string, due, now time.Time) {
	var next time.Time
	if expr != "" {
		sched, err := cron.Parse(expr)
		if err != nil {
			s.log.Warn().Str("scheduled_id", id).Err(err).Msg("scheduler: stored cron does not parse; firing it one last time")
		} else {
			next, _ = sched.Next(now) // zero: no occurrence within a year, the row ends
		}
	}
	var (
		out       *meshd.QueuedMessage
		from      sender
		multicast bool
	)
	fired, err := s.cfg.Store.FireSchedule(ctx, id, due, next,
		func(meshID string, member meshd.Member, to, message, _ string) (*meshd.QueuedMessage, bool, error) {
			out, from = nil, sender{member: member, name: member.DisplayName}
			if member.ID == "" || member.RevokedAt != nil {
				s.log.Info().Str("scheduled_id", id).Str("mesh_id", meshID).Msg("scheduled message not delivered: sender is no longer a member")
				return nil, false, nil
			}
			var no *refusal
			var err error
			if multicast, no, err = s.route(ctx, meshID, from, to); err != nil || no != nil {
				if no != nil {
					s.log.Info().Str("scheduled_id", id).Str("mesh_id", meshID).Str("reason", no.text).Msg("scheduled message not delivered")
				}
				return nil, false, err
			}
			out = &meshd.QueuedMessage{
				MeshID: meshID, SenderMemberID: member.ID, TargetSpec: to, Priority: meshd.PriorityNow,
				Nonce: "", Ciphertext: base64.StdEncoding.EncodeToString([]byte(message)), SenderName: from.name,
			}
			return out, multicast, nil
		})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Str("scheduled_id", id).Err(err).Msg("scheduler: fire")
		}
		return
	}
	if fired && out != nil {
		s.announce(ctx, out, from, multicast, announceOpts{subtype: "reminder"})
	}
}

func (s *Server) nextScheduleWait(ctx context.Context) time.Duration {
	d, ok, err := s.cfg.Store.NextScheduleIn(ctx)
	if err != nil || !ok {
		return schedulePollMax
	}
	return min(max(d, schedulePollMin), schedulePollMax)
}

func (s *Server) pruneStreamSubscriptions(ctx context.Context) {
	n, err := s.cfg.Store.PruneStreamSubscriptions(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn().Err(err).Msg("prune stream subscriptions")
	case n > 0:
		s.log.Info().Int64("rows", n).Msg("pruned stale stream subscriptions")
	}
}
