package verbs

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/cron"
	"github.com/meshd/meshd/wire"
)

// Scheduled messages (docs/protocol.md B.14.3, A.3-18): the verbs store,
// list and cancel rows in Postgres; the leader's scheduler job (package
// jobs) fires them, as the member who scheduled them, on the road of a
// send.

const (
	// maxSubtype bounds the stored subtype label.
	maxSubtype = 64
	// maxDeliverAt (ms) is 9999-12-31T23:59:59.999Z: later times do not
	// fit a timestamptz.
	maxDeliverAt = 253402300799999
	// errTopics answers a schedule to a #topic (not supported).
	errTopics = "unsupported_target: topics are not supported"
)

// ScheduleStore holds scheduled messages (B.14.3).
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

type scheduleFrame struct {
	To          string   `json:"to"`
	Message     *string  `json:"message"`
	DeliverAt   *float64 `json:"deliverAt"` // ms since the epoch
	Subtype     string   `json:"subtype"`
	Cron        string   `json:"cron"`
	ScheduledID string   `json:"scheduledId"`
}

// schedule stores the row and acks with the first fire time: the given
// deliverAt for a one-shot (in the past: fires at once), the next cron
// occurrence after now (UTC, A.3-11) for a cron schedule.
func (h *Handler) schedule(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	var m scheduleFrame
	if err := decode(data, &m, "schedule frame"); err != nil {
		return nil, err
	}
	switch {
	case m.To == "":
		return nil, invalid("schedule: to required")
	case m.Message == nil:
		return nil, invalid("schedule: message required")
	case len(m.Subtype) > maxSubtype:
		return nil, invalid("schedule: subtype longer than %d bytes", maxSubtype)
	case strings.HasPrefix(m.To, "#"):
		return nil, refuse("unsupported_target", errTopics)
	}
	// Same size rule as send (B.4.1 step 2) on what will be queued.
	if n := base64.StdEncoding.EncodedLen(len(*m.Message)) + wire.JSLen(m.To); n > h.cfg.MaxMessageBytes {
		return nil, invalid("schedule: payload too large: %d bytes > MAX_MESSAGE_BYTES=%d", n, h.cfg.MaxMessageBytes)
	}
	var at time.Time
	if m.Cron != "" {
		sched, err := cron.Parse(m.Cron)
		var ok bool
		if err == nil {
			at, ok = sched.Next(h.cfg.Now())
		}
		if !ok {
			return nil, refuse("invalid_cron", "Invalid cron expression: "+m.Cron)
		}
	} else {
		if m.DeliverAt == nil {
			return nil, invalid("schedule: deliverAt (ms) or cron required")
		}
		if *m.DeliverAt < 0 || *m.DeliverAt > maxDeliverAt {
			return nil, invalid("schedule: deliverAt out of range")
		}
		at = time.UnixMilli(int64(*m.DeliverAt))
	}
	id, err := h.cfg.Store.CreateSchedule(ctx, p.Presence.MeshID, p.Presence.ID, p.Member.ID, m.To, *m.Message, at, m.Cron, m.Subtype)
	if err != nil {
		return nil, fmt.Errorf("schedule failed: %w", err)
	}
	ack := map[string]any{"type": "scheduled_ack", "scheduledId": id, "deliverAt": at.UnixMilli()}
	if m.Cron != "" {
		ack["cron"] = m.Cron
	}
	return withReqID(ack, reqID), nil
}

func (h *Handler) listScheduled(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	if err := decode(data, &scheduleFrame{}, "schedule frame"); err != nil {
		return nil, err
	}
	list, err := h.cfg.Store.ListSchedules(ctx, p.Presence.MeshID, p.Presence.ID, p.Member.ID)
	if err != nil {
		return nil, fmt.Errorf("list_scheduled failed: %w", err)
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
	return withReqID(map[string]any{"type": "scheduled_list", "messages": msgs}, reqID), nil
}

// cancelScheduled cancels one of the member's pending schedules; ok is
// false when there is none with that id.
func (h *Handler) cancelScheduled(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	var m scheduleFrame
	if err := decode(data, &m, "schedule frame"); err != nil {
		return nil, err
	}
	if m.ScheduledID == "" {
		return nil, invalid("cancel_scheduled: scheduledId required")
	}
	ok, err := h.cfg.Store.CancelSchedule(ctx, p.Presence.MeshID, p.Member.ID, m.ScheduledID)
	if err != nil {
		return nil, fmt.Errorf("cancel_scheduled failed: %w", err)
	}
	return withReqID(map[string]any{"type": "cancel_scheduled_ack", "scheduledId": m.ScheduledID, "ok": ok}, reqID), nil
}
