package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// AuditEvent is the root package's audit-chain event (docs/protocol.md B.8).
type AuditEvent = meshd.AuditEvent

// AuditEntry is one row of a mesh's audit chain as audit_query returns it
// (B.8).
type AuditEntry = meshd.AuditEntry

// AuditVerification is the result of walking a mesh's chain (B.8 Verify).
type AuditVerification struct {
	Valid   bool
	Entries int // rows of the mesh, also when the chain is broken
	// BrokenAt is the id of the first row whose prev_hash or hash does not
	// match; nil when Valid.
	BrokenAt *int64
	// BrokenIndex is BrokenAt's 1-based position in the chain; 0 when Valid.
	BrokenIndex int
	// Reason says what failed at BrokenAt: "prev_hash" (linkage) or "hash"
	// (the row's fields no longer hash to its stored hash).
	Reason string
}

// auditRow is an AuditEvent ready to insert: its payload canonicalized.
type auditRow struct {
	ev        AuditEvent
	canonical string
	messageID *string // message_sent's queue row (from the outbox); nil otherwise
}

// AppendAudit appends events to meshID's chain in one transaction (B.8
// write path): it takes pg_advisory_xact_lock(wire.AuditLockKey(meshID)),
// re-reads the tail inside the transaction, then hashes and inserts each
// event in order, each chaining from the one before. Every writer on every
// replica takes the same lock before reading the tail, so the chain stays
// linear (never forks); a batch costs one lock and four round trips however
// many events it carries, which keeps the audit write off the per-message
// critical path. An event whose payload cannot be canonicalized fails the
// whole call before anything is written.
func (s *Store) AppendAudit(ctx context.Context, meshID string, events []AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	rows := make([]auditRow, len(events))
	for i, ev := range events {
		c, err := wire.CanonicalJSON(ev.Payload)
		if err != nil {
			return fmt.Errorf("append audit: %s payload: %w", ev.EventType, err)
		}
		rows[i] = auditRow{ev: ev, canonical: c}
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("append audit: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	prev, prevAt, now, err := auditTailLocked(ctx, tx, meshID)
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if err := insertAuditLocked(ctx, tx, meshID, rows, prev, prevAt, now); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("append audit: commit: %w", err)
	}
	return nil
}

// auditTailLocked takes the mesh's audit lock and then reads the chain's
// tail and the database clock. The two must be separate statements: under
// READ COMMITTED a statement's snapshot is taken when it starts, so a tail
// read in the same statement as the lock could miss the row committed by
// the writer we waited for, and fork the chain. They are pipelined in one
// round trip. An empty chain returns wire.Genesis and a zero time.
func auditTailLocked(ctx context.Context, tx pgx.Tx, meshID string) (prev string, prevAt, now time.Time, err error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, wire.AuditLockKey(meshID))
	b.Queue(auditTailSQL, meshID)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return "", time.Time{}, time.Time{}, fmt.Errorf("lock: %w", err)
	}
	prev, prevAt, now, err = scanAuditTail(br.QueryRow())
	if err != nil {
		return "", time.Time{}, time.Time{}, err
	}
	if err := br.Close(); err != nil {
		return "", time.Time{}, time.Time{}, fmt.Errorf("tail: %w", err)
	}
	return prev, prevAt, now, nil
}

// auditTailSQL reads the database clock and meshID's chain tail.
const auditTailSQL = `
SELECT date_trunc('milliseconds', clock_timestamp()), t.hash, t.created_at
FROM (SELECT 1) one
LEFT JOIN LATERAL (
	SELECT hash, created_at FROM mesh.audit_log WHERE mesh_id = $1 ORDER BY id DESC LIMIT 1
) t ON true`

// scanAuditTail scans auditTailSQL; an empty chain is wire.Genesis and a
// zero time.
func scanAuditTail(row pgx.Row) (prev string, prevAt, now time.Time, err error) {
	var hash *string
	var at *time.Time
	if err := row.Scan(&now, &hash, &at); err != nil {
		return "", time.Time{}, time.Time{}, fmt.Errorf("tail: %w", err)
	}
	prev = wire.Genesis
	if hash != nil {
		prev, prevAt = *hash, *at
	}
	return prev, prevAt, now, nil
}

// insertAuditLocked hashes rows in order, chaining from prev, and inserts
// them in one statement (not one per row: a busy mesh's writer moves a
// hundred message_sent events at a time, issue 10); the rows are inserted in
// chain order, so ids follow it (VerifyAudit reads the chain by id and
// would report a row out of place). The payload is stored as its canonical
// text cast to jsonb, which re-canonicalizes to the same text (VerifyAudit
// relies on it).
func insertAuditLocked(ctx context.Context, tx pgx.Tx, meshID string, rows []auditRow, prev string, prevAt, now time.Time) error {
	n := len(rows)
	var (
		types, payloads, prevs, hashes = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		actors, names, msgIDs          = make([]*string, n), make([]*string, n), make([]*string, n)
		ats                            = make([]time.Time, n)
	)
	for i, r := range rows {
		at := r.ev.CreatedAt
		if at.IsZero() {
			at = now
			if at.Before(prevAt) {
				at = prevAt // the database clock stepped back: keep created_at monotonic per mesh
			}
		}
		at = at.Truncate(time.Millisecond)
		hash := wire.AuditHash(prev, meshID, r.ev.EventType, r.ev.ActorMemberID, r.canonical, at)
		types[i], actors[i], payloads[i], prevs[i], hashes[i], ats[i], msgIDs[i] =
			r.ev.EventType, r.ev.ActorMemberID, r.canonical, prev, hash, at, r.messageID
		if r.ev.ActorDisplayName != "" {
			names[i] = &r.ev.ActorDisplayName
		}
		prev, prevAt = hash, at
	}
	if _, err := tx.Exec(ctx, insertAuditSQL, meshID, types, actors, names, payloads, prevs, hashes, ats, msgIDs); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	return nil
}

const insertAuditSQL = `
INSERT INTO mesh.audit_log (mesh_id, event_type, actor_member_id, actor_display_name, payload, prev_hash, hash, created_at, message_id)
SELECT $1, r.typ, r.actor, r.name, r.payload::jsonb, r.prev, r.hash, r.at, r.msg
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::text[])
	WITH ORDINALITY AS r(typ, actor, name, payload, prev, hash, at, msg, ord)
ORDER BY r.ord`

// VerifyAudit walks meshID's chain (B.8 Verify) and reports whether it is
// intact, how many rows it has and the id of the first broken row.
func (s *Store) VerifyAudit(ctx context.Context, meshID string) (valid bool, entries int, brokenAt *int64, err error) {
	v, err := s.VerifyAuditDetail(ctx, meshID)
	return v.Valid, v.Entries, v.BrokenAt, err
}

// VerifyAuditDetail is VerifyAudit with the broken row's position and what
// failed there (for `meshd audit verify`). It reads the rows ORDER BY id in
// one statement, hence one snapshot, streaming them so a long chain does
// not sit in memory. Each row's hash is recomputed from its stored fields,
// re-canonicalizing the JSONB payload with JS semantics, and its prev_hash
// must equal the previous row's hash (wire.Genesis for the first). Rows
// after the first failure are counted, not checked.
func (s *Store) VerifyAuditDetail(ctx context.Context, meshID string) (AuditVerification, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id, event_type, actor_member_id, payload::text, prev_hash, hash, created_at
FROM mesh.audit_log WHERE mesh_id = $1 ORDER BY id`, meshID)
	if err != nil {
		return AuditVerification{}, fmt.Errorf("verify audit: %w", err)
	}
	defer rows.Close()
	v := AuditVerification{Valid: true}
	prev := wire.Genesis
	for rows.Next() {
		var (
			id                       int64
			event, payload, prevHash string
			hash                     string
			actor                    *string
			at                       time.Time
		)
		if err := rows.Scan(&id, &event, &actor, &payload, &prevHash, &hash, &at); err != nil {
			return AuditVerification{}, fmt.Errorf("verify audit: %w", err)
		}
		v.Entries++
		if !v.Valid {
			continue
		}
		reason := checkAuditRow(prev, meshID, event, actor, payload, prevHash, hash, at)
		if reason != "" {
			v.Valid, v.BrokenAt, v.BrokenIndex, v.Reason = false, &id, v.Entries, reason
		}
		prev = hash
	}
	if err := rows.Err(); err != nil {
		return AuditVerification{}, fmt.Errorf("verify audit: %w", err)
	}
	return v, nil
}

// checkAuditRow returns "" when a row links to prev and hashes to its
// stored hash, else which check failed. A payload that is not valid JSON
// cannot hash to anything and fails as "hash".
func checkAuditRow(prev, meshID, event string, actor *string, payload, prevHash, hash string, at time.Time) string {
	if prevHash != prev {
		return "prev_hash"
	}
	c, err := wire.CanonicalJSONBytes([]byte(payload))
	if err != nil || wire.AuditHash(prevHash, meshID, event, actor, c, at) != hash {
		return "hash"
	}
	return ""
}

// QueryAudit returns a page of meshID's chain newest first (B.8
// audit_query) and the number of rows matching the filter; eventType ""
// matches every event. limit must be positive and offset non-negative.
func (s *Store) QueryAudit(ctx context.Context, meshID string, limit, offset int, eventType string) ([]AuditEntry, int, error) {
	if limit <= 0 || offset < 0 {
		return nil, 0, errors.New("query audit: limit must be positive and offset non-negative")
	}
	var total int
	err := s.pool.QueryRow(ctx, `
SELECT count(*) FROM mesh.audit_log WHERE mesh_id = $1 AND ($2 = '' OR event_type = $2)`, meshID, eventType).Scan(&total)
	if err != nil {
		return nil, 0, fmt.Errorf("query audit: count: %w", err)
	}
	rows, err := s.pool.Query(ctx, `
SELECT id, event_type, actor_member_id, actor_display_name, payload::text, hash, created_at
FROM mesh.audit_log WHERE mesh_id = $1 AND ($2 = '' OR event_type = $2)
ORDER BY id DESC LIMIT $3 OFFSET $4`, meshID, eventType, limit, offset)
	if err != nil {
		return nil, 0, fmt.Errorf("query audit: %w", err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditEntry, error) {
		var e AuditEntry
		var payload string
		err := r.Scan(&e.ID, &e.EventType, &e.ActorMemberID, &e.ActorDisplayName, &payload, &e.Hash, &e.CreatedAt)
		e.Payload = json.RawMessage(payload)
		return e, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("query audit: %w", err)
	}
	return entries, total, nil
}
