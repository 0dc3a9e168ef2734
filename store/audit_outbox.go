package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// The audit outbox (docs/protocol.md B.8 "Write path"): events are committed
// to mesh.audit_outbox first — a send's message_sent in the very statement
// that inserts its queue row (EnqueueBatch, insertQueueRow), other events
// by the audit writer — and any replica's writer later moves them into the
// hash chain under the mesh's advisory lock. An event is durable once its
// outbox row commits; a replica that dies leaves its rows to the others.

// outboxMessageSentCols are the outbox columns a message_sent fills.
const outboxMessageSentCols = `mesh.audit_outbox (mesh_id, event_type, actor_member_id, actor_display_name, payload, message_id, created_at)`

// outboxMessageSentSelect renders the message_sent of the queue rows q
// (B.8 payload {targetSpec, priority}); n names each row's actor display
// name. A CTE's INSERT runs to completion whether or not it is read, in the
// same statement — and so the same commit — as the queue rows.
const outboxMessageSentSelect = `
SELECT q.mesh_id, 'message_sent', q.sender_member_id, NULLIF(n.name, ''),
	jsonb_build_object('targetSpec', q.target_spec, 'priority', q.priority), q.id, q.created_at`

// InsertAuditOutbox commits events to the outbox in one statement, in
// order. Events of a mesh that no longer exists are skipped (its chain went
// with it). A value the database refuses (meshd.ErrInvalidData) fails the
// whole call; the caller may retry event by event.
func (s *Store) InsertAuditOutbox(ctx context.Context, events []meshd.MeshAuditEvent) error {
	n := len(events)
	if n == 0 {
		return nil
	}
	var (
		mesh, ev, names, payload = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		actors                   = make([]*string, n)
		ats                      = make([]*time.Time, n)
	)
	for i, e := range events {
		c, err := wire.CanonicalJSON(e.Payload)
		if err != nil {
			return fmt.Errorf("insert audit outbox: %s payload: %v: %w", e.EventType, err, meshd.ErrInvalidData)
		}
		mesh[i], ev[i], names[i], payload[i], actors[i] = e.MeshID, e.EventType, e.ActorDisplayName, c, e.ActorMemberID
		if !e.CreatedAt.IsZero() {
			ats[i] = &e.CreatedAt
		}
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO mesh.audit_outbox (mesh_id, event_type, actor_member_id, actor_display_name, payload, created_at)
SELECT r.mesh, r.ev, r.actor, NULLIF(r.name, ''), r.payload::jsonb, COALESCE(r.at, now())
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) WITH ORDINALITY
	AS r(mesh, ev, actor, name, payload, at, ord)
WHERE EXISTS (SELECT 1 FROM mesh.mesh m WHERE m.id = r.mesh)
ORDER BY r.ord`, mesh, ev, actors, names, payload, ats)
	if err != nil {
		return fmt.Errorf("insert audit outbox: %w", classify(err))
	}
	return nil
}

// classify wraps an error of SQLSTATE class 22 (data exception) with
// meshd.ErrInvalidData.
func classify(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && len(pe.Code) == 5 && pe.Code[:2] == "22" {
		return fmt.Errorf("%w: %w", meshd.ErrInvalidData, err)
	}
	return err
}

// AuditOutboxMeshes lists up to limit meshes with events in the outbox.
func (s *Store) AuditOutboxMeshes(ctx context.Context, limit int) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT mesh_id FROM mesh.audit_outbox LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("audit outbox meshes: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("audit outbox meshes: %w", err)
	}
	return ids, nil
}

// ChainAuditOutbox moves up to max of meshID's outbox events, oldest id
// first, into its chain and deletes them from the outbox, in one
// transaction under the mesh's audit lock (B.8). With wait it waits for
// the lock; without, it returns busy when another writer holds it. Each
// entry keeps its event time (the outbox row's created_at), raised where
// needed so created_at never goes back along the chain.
func (s *Store) ChainAuditOutbox(ctx context.Context, meshID string, wait bool, max int) (moved int, busy bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("chain audit outbox: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	t, locked, err := outboxHeadLocked(ctx, tx, meshID, wait, max)
	if err != nil || !locked || len(t.rows) == 0 {
		return 0, !locked, err
	}
	if err := insertAuditLocked(ctx, tx, meshID, t.rows, t.prev, t.prevAt, t.now); err != nil {
		return 0, false, fmt.Errorf("chain audit outbox: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM mesh.audit_outbox WHERE id = ANY($1)`, t.ids); err != nil {
		return 0, false, fmt.Errorf("chain audit outbox: delete: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, false, fmt.Errorf("chain audit outbox: commit: %w", err)
	}
	return len(t.rows), false, nil
}

// outboxHead is what ChainAuditOutbox read under the lock.
type outboxHead struct {
	prev        string
	prevAt, now time.Time
	rows        []auditRow
	ids         []int64
}

// outboxHeadLocked takes (or tries) the mesh's audit lock, then reads the
// chain's tail and the outbox's first max events, in one round trip. The
// reads are statements after the lock's, so they see every row committed
// by the writer we waited for (see auditTailLocked).
func outboxHeadLocked(ctx context.Context, tx pgx.Tx, meshID string, wait bool, max int) (outboxHead, bool, error) {
	b := &pgx.Batch{}
	if wait {
		b.Queue(`SELECT true FROM pg_advisory_xact_lock($1)`, wire.AuditLockKey(meshID))
	} else {
		b.Queue(`SELECT pg_try_advisory_xact_lock($1)`, wire.AuditLockKey(meshID))
	}
	b.Queue(auditTailSQL, meshID)
	b.Queue(`
SELECT id, event_type, actor_member_id, COALESCE(actor_display_name, ''), payload::text, message_id, created_at
FROM mesh.audit_outbox WHERE mesh_id = $1 ORDER BY id LIMIT $2`, meshID, max)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	var h outboxHead
	var locked bool
	if err := br.QueryRow().Scan(&locked); err != nil {
		return h, false, fmt.Errorf("chain audit outbox: lock: %w", err)
	}
	var err error
	if h.prev, h.prevAt, h.now, err = scanAuditTail(br.QueryRow()); err != nil {
		return h, false, fmt.Errorf("chain audit outbox: %w", err)
	}
	rows, err := br.Query()
	if err == nil {
		err = h.scan(rows)
	}
	if err == nil {
		err = br.Close()
	}
	if err != nil {
		return h, false, fmt.Errorf("chain audit outbox: read: %w", err)
	}
	return h, locked, nil
}

// scan reads outbox rows into h.rows, re-canonicalizing each JSONB payload
// and keeping created_at monotonic from the chain's tail.
func (h *outboxHead) scan(rows pgx.Rows) error {
	defer rows.Close()
	at := h.prevAt
	for rows.Next() {
		var (
			id      int64
			r       auditRow
			payload string
			created time.Time
		)
		if err := rows.Scan(&id, &r.ev.EventType, &r.ev.ActorMemberID, &r.ev.ActorDisplayName, &payload, &r.messageID, &created); err != nil {
			return err
		}
		c, err := wire.CanonicalJSONBytes([]byte(payload))
		if err != nil {
			return fmt.Errorf("outbox row %d payload: %w", id, err)
		}
		at = latest(at, created.Truncate(time.Millisecond))
		r.canonical, r.ev.CreatedAt = c, at
		h.rows, h.ids = append(h.rows, r), append(h.ids, id)
	}
	return rows.Err()
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// MissingAuditEvents counts meshID's queue rows (every row is a member's
// send, delivered or still queued) that have no message_sent entry in the
// chain nor in the outbox, with up to 5 of their ids. Rows older than the
// outbox migration are not checked: entries written before it carry no
// message id to match.
func (s *Store) MissingAuditEvents(ctx context.Context, meshID string) (n int, sample []string, err error) {
	err = s.pool.QueryRow(ctx, `
SELECT count(*), COALESCE((array_agg(q.id ORDER BY q.created_at, q.id))[1:5], '{}')
FROM mesh.message_queue q
WHERE q.mesh_id = $1
	AND q.created_at >= COALESCE((SELECT min(applied_at) FROM mesh.__cmh_migrations
		WHERE filename LIKE '%\_audit\_outbox.sql'), '-infinity')
	AND NOT EXISTS (SELECT 1 FROM mesh.audit_log a
		WHERE a.mesh_id = q.mesh_id AND a.message_id = q.id AND a.event_type = 'message_sent')
	AND NOT EXISTS (SELECT 1 FROM mesh.audit_outbox o WHERE o.mesh_id = q.mesh_id AND o.message_id = q.id)`,
		meshID).Scan(&n, &sample)
	if err != nil {
		return 0, nil, fmt.Errorf("missing audit events: %w", err)
	}
	return n, sample, nil
}
