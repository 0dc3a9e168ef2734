package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
)

// Scheduled messages (docs/protocol.md B.14.3, A.3-18). A row is pending while
// it is not cancelled and either a one-shot not yet fired or a cron row.
// The leader's scheduler polls DueSchedules and fires each occurrence with
// FireSchedule, whose compare-and-set on deliver_at lets exactly one caller
// in the cluster win an occurrence, even with two schedulers running.

const pendingScheduleSQL = `NOT cancelled AND (fired_at IS NULL OR cron IS NOT NULL)`

// CreateSchedule stores a scheduled message of memberID (created on
// presenceID's socket) and returns its id. cron and subtype may be "".
func (s *Store) CreateSchedule(ctx context.Context, meshID, presenceID, memberID, to, message string, deliverAt time.Time, cron, subtype string) (string, error) {
	id := meshd.NewID()
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.scheduled_message (id, mesh_id, presence_id, member_id, "to", message, deliver_at, cron, subtype)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		id, meshID, nullIfEmpty(presenceID), memberID, to, message, deliverAt, nullIfEmpty(cron), nullIfEmpty(subtype))
	if err != nil {
		return "", fmt.Errorf("create schedule: %w", err)
	}
	return id, nil
}

// ListSchedules returns the pending schedules of meshID created by
// presenceID or by memberID, soonest first.
func (s *Store) ListSchedules(ctx context.Context, meshID, presenceID, memberID string) ([]meshd.Schedule, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id, "to", message, COALESCE(cron, ''), deliver_at, created_at, fired_count
FROM mesh.scheduled_message
WHERE mesh_id = $1 AND (presence_id = $2 OR member_id = $3) AND `+pendingScheduleSQL+`
ORDER BY deliver_at, id`, meshID, presenceID, memberID)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (meshd.Schedule, error) {
		sc := meshd.Schedule{MeshID: meshID}
		err := r.Scan(&sc.ID, &sc.To, &sc.Message, &sc.Cron, &sc.DeliverAt, &sc.CreatedAt, &sc.FiredCount)
		return sc, err
	})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return out, nil
}

// CancelSchedule cancels a pending schedule of memberID in meshID. It
// reports false when there is no such pending schedule.
func (s *Store) CancelSchedule(ctx context.Context, meshID, memberID, id string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE mesh.scheduled_message SET cancelled = true
WHERE id = $1 AND mesh_id = $2 AND member_id = $3 AND `+pendingScheduleSQL, id, meshID, memberID)
	if err != nil {
		return false, fmt.Errorf("cancel schedule: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// DueSchedules returns up to limit pending schedules whose deliver_at has
// passed, oldest first (ID, Cron and DeliverAt set), and the database's
// now: the scheduler computes the next cron occurrence from it, so every
// replica uses one clock.
func (s *Store) DueSchedules(ctx context.Context, limit int) (due []meshd.Schedule, now time.Time, err error) {
	if err := s.pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return nil, now, fmt.Errorf("due schedules: %w", err)
	}
	rows, err := s.pool.Query(ctx, `
SELECT id, COALESCE(cron, ''), deliver_at FROM mesh.scheduled_message
WHERE deliver_at <= $1 AND `+pendingScheduleSQL+`
ORDER BY deliver_at, id LIMIT $2`, now, limit)
	if err != nil {
		return nil, now, fmt.Errorf("due schedules: %w", err)
	}
	due, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (meshd.Schedule, error) {
		var sc meshd.Schedule
		err := r.Scan(&sc.ID, &sc.Cron, &sc.DeliverAt)
		return sc, err
	})
	if err != nil {
		return nil, now, fmt.Errorf("due schedules: %w", err)
	}
	return due, now, nil
}

// NextScheduleIn reports how long until the earliest pending schedule is
// due by the database's clock (≤ 0: due now); ok is false when none is
// pending.
func (s *Store) NextScheduleIn(ctx context.Context) (d time.Duration, ok bool, err error) {
	var secs *float64
	err = s.pool.QueryRow(ctx, `SELECT EXTRACT(EPOCH FROM min(deliver_at) - now())::float8
FROM mesh.scheduled_message WHERE `+pendingScheduleSQL).Scan(&secs)
	if err != nil {
		return 0, false, fmt.Errorf("next schedule: %w", err)
	}
	if secs == nil {
		return 0, false, nil
	}
	return time.Duration(*secs * float64(time.Second)), true, nil
}

// FireSchedule fires the occurrence of schedule id that was due at due,
// exactly once across the cluster. One UPDATE claims it: it matches only
// while the row is still pending and deliver_at still equals due (and has
// passed), and moves the row on — to next for a cron row, or fired (fired_at
// set) for a one-shot. A cron row with no next occurrence (next zero) is
// fired one last time and cancelled. A concurrent caller blocks on the row
// lock, then finds deliver_at changed and matches nothing.
//
// In the same transaction route decides the delivery and its queue row is
// inserted, so a crash can neither lose a claimed occurrence nor deliver it
// twice. fired is false when another caller won or the row is no longer due.
func (s *Store) FireSchedule(ctx context.Context, id string, due, next time.Time, route meshd.ScheduleRoute) (fired bool, err error) {
	var nextArg any
	if !next.IsZero() {
		nextArg = next
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		fired = false
		sc := meshd.Schedule{ID: id, DeliverAt: due}
		var memberID *string
		err := tx.QueryRow(ctx, `
UPDATE mesh.scheduled_message SET
	deliver_at = COALESCE($3::timestamptz, deliver_at),
	fired_at = now(), fired_count = fired_count + 1,
	cancelled = (cron IS NOT NULL AND $3::timestamptz IS NULL)
WHERE id = $1 AND deliver_at = $2 AND deliver_at <= now() AND `+pendingScheduleSQL+`
RETURNING mesh_id, member_id, "to", message, COALESCE(subtype, '')`, id, due, nextArg).
			Scan(&sc.MeshID, &memberID, &sc.To, &sc.Message, &sc.Subtype)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		var sender meshd.Member
		if memberID != nil {
			err := tx.QueryRow(ctx, `SELECT `+memberCols+` FROM mesh.member m WHERE m.id = $1`, *memberID).Scan(memberDest(&sender)...)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
		}
		q, delivered, err := route(sc, sender)
		if err != nil {
			return err
		}
		if q != nil {
			if err := insertQueueRow(ctx, tx, q, delivered); err != nil {
				return err
			}
		}
		fired = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("fire schedule: %w", err)
	}
	return fired, nil
}

// insertQueueRow inserts a queue row on q (the pool for Enqueue, a
// transaction when a schedule fires): id and priority defaults, and it sets
// m.CreatedAt and m.DeliveredAt. Its message_sent is committed to the audit
// outbox by the same statement (audit_outbox.go).
func insertQueueRow(ctx context.Context, q querier, m *meshd.QueuedMessage, delivered bool) error {
	if m.ID == "" {
		m.ID = meshd.NewID()
	}
	if m.Priority == "" {
		m.Priority = meshd.PriorityNext
	}
	if !m.Priority.Valid() {
		return fmt.Errorf("invalid priority %q", m.Priority)
	}
	return q.QueryRow(ctx, `
WITH q AS (
INSERT INTO mesh.message_queue (id, mesh_id, sender_member_id, sender_session_pubkey, target_spec, priority,
	nonce, ciphertext, client_message_id, request_fingerprint, delivered_at, reply_to_id, topic, body_version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $11::bool THEN now() END, $13, $14, NULLIF($15::int2, 0))
RETURNING id, mesh_id, sender_member_id, target_spec, priority, created_at, delivered_at
), a AS (
INSERT INTO `+outboxMessageSentCols+outboxMessageSentSelect+`
FROM q, (SELECT $12::text AS name) n
)
SELECT created_at, delivered_at FROM q`,
		m.ID, m.MeshID, m.SenderMemberID, nullIfEmpty(m.SenderSessionPubkey), m.TargetSpec, string(m.Priority),
		m.Nonce, m.Ciphertext, nullIfEmpty(m.ClientMessageID), nullIfEmpty(m.RequestFingerprint), delivered,
		m.SenderName, nullIfEmpty(m.ReplyToID), nullIfEmpty(m.Topic), int16(m.BodyVersion)).Scan(&m.CreatedAt, &m.DeliveredAt)
}
