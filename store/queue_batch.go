package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/meshd/meshd"
)

// The group commit of the delivery road (docs/benchmarks.md): the broker
// gathers the sends and acks of all its connections and hands them here in
// batches, one statement — one commit — per batch instead of one per
// message.

// enqueueBatchSQL inserts one row per array element, in array order, in one
// statement; created_at is the statement's now() for every row (FIFO among
// them falls back to id order, and one connection never has two sends in a
// batch: it waits for its ack). The same statement commits each row's
// message_sent to the audit outbox (audit_outbox.go), actor name $12 —
// except the delivery canary's rows (meshd.SystemMeshID), which are no one's
// messages.
const enqueueBatchSQL = `
WITH q AS (
INSERT INTO mesh.message_queue (id, mesh_id, sender_member_id, sender_session_pubkey, target_spec, priority,
	nonce, ciphertext, client_message_id, request_fingerprint, delivered_at, reply_to_id, topic, body_version)
SELECT r.id, r.mesh, r.sender, NULLIF(r.sess, ''), r.target, r.prio, r.nonce, r.ct,
	NULLIF(r.cmid, ''), NULLIF(r.fp, ''), CASE WHEN r.dl THEN now() END,
	NULLIF(r.reply, ''), NULLIF(r.topic, ''), NULLIF(r.bv, 0)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
	$9::text[], $10::text[], $11::bool[], $13::text[], $14::text[], $15::int2[])
	AS r(id, mesh, sender, sess, target, prio, nonce, ct, cmid, fp, dl, reply, topic, bv)
RETURNING id, mesh_id, sender_member_id, target_spec, priority, created_at, delivered_at
), a AS (
INSERT INTO ` + outboxMessageSentCols + outboxMessageSentSelect + `
FROM q JOIN unnest($1::text[], $12::text[]) WITH ORDINALITY AS n(id, name, ord) ON n.id = q.id
WHERE q.mesh_id <> '` + meshd.SystemMeshID + `' ORDER BY n.ord
)
SELECT id, created_at, delivered_at FROM q`

// EnqueueBatch inserts ms in one statement, all or nothing, with Enqueue's
// defaults (ID, Priority, CreatedAt, DeliveredAt when delivered[i]).
func (s *Store) EnqueueBatch(ctx context.Context, ms []*meshd.QueuedMessage, delivered []bool) error {
	if len(ms) != len(delivered) {
		return fmt.Errorf("enqueue batch: %d rows, %d delivered flags", len(ms), len(delivered))
	}
	cols := make([][]string, 13)
	bvs := make([]int16, 0, len(ms))
	byID := make(map[string]*meshd.QueuedMessage, len(ms))
	for _, m := range ms {
		if m.ID == "" {
			m.ID = meshd.NewID()
		}
		if m.Priority == "" {
			m.Priority = meshd.PriorityNext
		}
		if !m.Priority.Valid() {
			return fmt.Errorf("enqueue batch: invalid priority %q", m.Priority)
		}
		byID[m.ID] = m
		for i, v := range []string{m.ID, m.MeshID, m.SenderMemberID, m.SenderSessionPubkey, m.TargetSpec,
			string(m.Priority), m.Nonce, m.Ciphertext, m.ClientMessageID, m.RequestFingerprint, m.SenderName,
			m.ReplyToID, m.Topic} {
			cols[i] = append(cols[i], v)
		}
		bvs = append(bvs, int16(m.BodyVersion))
	}
	rows, err := s.pool.Query(ctx, enqueueBatchSQL, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5],
		cols[6], cols[7], cols[8], cols[9], delivered, cols[10], cols[11], cols[12], bvs)
	if err != nil {
		return fmt.Errorf("enqueue batch: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var q meshd.QueuedMessage
		if err := rows.Scan(&id, &q.CreatedAt, &q.DeliveredAt); err != nil {
			return fmt.Errorf("enqueue batch: %w", err)
		}
		if m := byID[id]; m != nil {
			m.CreatedAt, m.DeliveredAt = q.CreatedAt, q.DeliveredAt
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("enqueue batch: %w", err)
	}
	return nil
}

// clientAckBatchSQL marks the acked rows; `q.id = ANY($2)` makes the plan
// go through the primary key (a join on unnest alone can hash-join a seq
// scan of the whole queue, which grows with history). The undelivered test
// is spelled pendingSQL so that no plan can read the rows through a
// pending-only index instead.
const clientAckBatchSQL = `
UPDATE mesh.message_queue q SET delivered_at = now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS a(mesh, id, keys)
WHERE q.id = ANY($2::text[]) AND q.id = a.id AND q.mesh_id = a.mesh AND ` + pendingSQL + `
	AND (q.target_spec = ANY(string_to_array(a.keys, ',')) OR q.target_spec = '*'
		OR q.target_spec LIKE '@%' OR q.target_spec LIKE '#%')`

// ClientAckBatch applies acks in one statement through the primary key.
// Returns the number of rows marked.
func (s *Store) ClientAckBatch(ctx context.Context, acks []meshd.AckByID) (int64, error) {
	mesh, ids, keys := make([]string, len(acks)), make([]string, len(acks)), make([]string, len(acks))
	for i, a := range acks {
		mesh[i], ids[i], keys[i] = a.MeshID, a.ID, strings.Join(a.Keys, ",")
	}
	tag, err := s.lease.Exec(ctx, clientAckBatchSQL, mesh, ids, keys)
	if err != nil {
		return 0, fmt.Errorf("client ack batch: %w", err)
	}
	return tag.RowsAffected(), nil
}
