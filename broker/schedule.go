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

// Scheduled messages (docs/protocol.md B.14.3, A.3-18): the verbs. The rows
// live in Postgres and are fired by the leader-run scheduler job (package
// jobs), which sends each occurrence through Route and Announce below, the
// road of a send. An occurrence is delivered as the creating member,
// whether its socket is on this replica, another one, or gone (upstream
// skipped it unless the creator's socket was on the firing node).

const (
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
	list, err := s.cfg.Store.ListSchedules(ctx, pres.MeshID, pres.ID, member.ID)
	if err != nil {
		return fmt.Errorf("list_scheduled failed: %w", err)
	}
	msgs := []map[string]any{}
	for _, sc := range list {
		e := map[string]any{"id": sc.ID, "to": sc.To, "message": sc.Message,
			"deliverAt": sc.DeliverAt.UnixMilli(), "createdAt": sc.CreatedAt.UnixMilli()}
		if sc.Cron != "" {
			e["cron"], e["firedCount"] = sc.Cron, sc.FiredCount
		}
		msgs = append(msgs, e)
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

// Route is route (delivery.go) for a message sent on from's behalf by the
// scheduler job (package jobs): refused is the refusal's text, "" when
// routed.
func (s *Server) Route(ctx context.Context, meshID string, from meshd.Member, target string) (multicast bool, refused string, err error) {
	multicast, no, err := s.route(ctx, meshID, sender{member: from, name: from.DisplayName}, target)
	if no != nil {
		return false, no.text, nil
	}
	return multicast, "", err
}

// Announce is announce (delivery.go) for a row the scheduler job committed
// on from's behalf; a multicast push carries subtype.
func (s *Server) Announce(ctx context.Context, q *meshd.QueuedMessage, from meshd.Member, multicast bool, subtype string) {
	s.announce(ctx, q, sender{member: from, name: from.DisplayName}, multicast, announceOpts{subtype: subtype})
}
