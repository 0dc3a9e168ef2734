package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
)

// DefaultClaimLease is the claim lease when ClaimRequest.Lease is zero
// (B.5, M1): long enough for a push and its client_ack, short enough that a
// replica dying mid-delivery delays redelivery by at most this much.
const DefaultClaimLease = 30 * time.Second

// Enqueue inserts m (B.4.1 step 5), setting m.ID (meshd.NewID) when empty,
// m.Priority to next when empty, and m.CreatedAt from the database clock.
// When delivered is true the row is inserted already delivered (broadcast
// and multicast rows, B.4.1 step 9) and m.DeliveredAt is set.
func (s *Store) Enqueue(ctx context.Context, m *meshd.QueuedMessage, delivered bool) error {
	if err := insertQueueRow(ctx, s.pool, m, delivered); err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	return nil
}

// claimSQL is the one atomic claim statement (B.5), for a batch of claimers
// (the drains of every socket of a replica that woke while the previous
// batch ran: one statement instead of one per socket). r holds one row per
// claimer i: mesh, claim id, limit (0: none), status presence (”), the
// fallback priorities ($2 as a text array literal) and the lease in seconds;
// $7/$8 pair each claimer with its targets. picked reads each claimer's
// targets through message_queue_pending_target_idx (mesh, target, FIFO) —
// never the mesh's other rows — locking eligible rows FOR UPDATE SKIP
// LOCKED so concurrent batches on any replica take disjoint sets, keeps the
// FIFO-first limit of them per claimer, and gives a row two claimers of one
// batch could both take (a shared multicast target) to the first; the
// UPDATE leases the rows to their claimers, reaching them through the
// primary key once (claim id and lease come from picked by a subquery: a
// join with the key lookup made the planner probe the key once per row and
// picked id, 4–7 M probes in a burst); the outer SELECT joins the
// sender member and restores FIFO order per claimer (UPDATE … RETURNING has
// none). A row is eligible when undelivered, unclaimed or its claim expired,
// and its priority deliverable: the fallback set, or, when the claimer names
// a presence, what that presence's status allows (B.4.2), read in the same
// statement so a drain needs no separate status read.
const claimSQL = `
WITH r AS (
	SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[], $9::float8[])
		AS r(i, mesh, claimer, lim, status_of, prios, lease)
), picked AS (
	SELECT DISTINCT ON (c.id) r.i, r.claimer, r.lease, c.id, c.created_at
	FROM r CROSS JOIN LATERAL (
		SELECT c.id, c.created_at
		FROM (SELECT t.spec FROM unnest($7::int[], $8::text[]) AS t(i, spec) WHERE t.i = r.i) t
		CROSS JOIN LATERAL (
			SELECT q.id, q.created_at
			FROM mesh.message_queue q
			WHERE q.mesh_id = r.mesh
				AND q.target_spec = t.spec
				AND q.delivered_at IS NULL
				AND (q.claimed_at IS NULL OR q.claim_expires_at IS NULL OR q.claim_expires_at < now())
				AND q.priority = ANY(COALESCE(
					(SELECT CASE p.status WHEN 'idle' THEN '{now,next,low}'::text[] ELSE '{now}'::text[] END
					 FROM mesh.presence p WHERE p.id = NULLIF(r.status_of, '')), r.prios::text[]))
			ORDER BY q.created_at, q.id
			LIMIT NULLIF(r.lim, 0)
			FOR UPDATE OF q SKIP LOCKED
		) c
		ORDER BY c.created_at, c.id
		LIMIT NULLIF(r.lim, 0)
	) c
	ORDER BY c.id, r.i
), claimed AS (
	UPDATE mesh.message_queue q
	SET claimed_at = now(), (claim_id, claim_expires_at) =
		(SELECT p.claimer, now() + make_interval(secs => p.lease) FROM picked p WHERE p.id = q.id)
	WHERE q.id = ANY(ARRAY(SELECT id FROM picked))
	RETURNING q.id, q.mesh_id, q.sender_member_id, q.sender_session_pubkey, q.priority, q.nonce, q.ciphertext,
		q.created_at, q.client_message_id, q.request_fingerprint, q.reply_to_id, q.topic, q.body_version
)
SELECT p.i, c.id, c.mesh_id, COALESCE(c.sender_session_pubkey, m.peer_pubkey), c.sender_member_id, m.peer_pubkey,
	m.display_name, c.priority, c.nonce, c.ciphertext, c.created_at,
	COALESCE(c.client_message_id, ''), COALESCE(c.request_fingerprint, ''),
	COALESCE(c.reply_to_id, ''), COALESCE(c.topic, ''), COALESCE(c.body_version, 0)
FROM claimed c
JOIN picked p ON p.id = c.id
JOIN mesh.member m ON m.id = c.sender_member_id
ORDER BY p.i, c.created_at, c.id`

// Claim atomically claims the rows one connection may take (B.5) and returns
// them FIFO (created_at, then id). Targets: the member pubkey, the session
// pubkey (if any), `*`, `@all`, and `@g` for every group g and each of its
// ancestor paths (`a/b/c` also claims `@a/b` and `@a`). Only Priorities are
// eligible (an empty set claims nothing). Lease 0 means DefaultClaimLease;
// Limit ≤ 0 means no limit. The claim id is ClaimerPresenceID.
func (s *Store) Claim(ctx context.Context, req meshd.ClaimRequest) ([]meshd.Delivery, error) {
	out, err := s.ClaimBatch(ctx, []meshd.ClaimRequest{req})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// ClaimBatch is Claim for several claimers in one statement (and one round
// trip, their JSONL status refreshes included): out[i] are reqs[i]'s rows,
// FIFO. A row two of them could take goes to the first.
func (s *Store) ClaimBatch(ctx context.Context, reqs []meshd.ClaimRequest) ([][]meshd.Delivery, error) {
	out := make([][]meshd.Delivery, len(reqs))
	args, n := claimArgs(reqs)
	if n == 0 {
		return out, nil // nothing deliverable for anyone
	}
	rows, err := s.claimRows(ctx, reqs, args)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	var i int
	var d meshd.Delivery
	_, err = pgx.ForEachRow(rows, []any{&i, &d.ID, &d.MeshID, &d.SenderPubkey, &d.SenderMemberID, &d.SenderMemberPubkey,
		&d.SenderName, &d.Priority, &d.Nonce, &d.Ciphertext, &d.CreatedAt, &d.ClientMessageID, &d.RequestFingerprint,
		&d.ReplyToID, &d.Topic, &d.BodyVersion},
		func() error {
			if i < 0 || i >= len(out) {
				return fmt.Errorf("claimer %d out of range", i)
			}
			out[i] = append(out[i], d)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return out, nil
}

// claimArgs are claimSQL's arguments for reqs and how many claimers they
// hold: a request with no deliverable priority claims nothing and is left
// out.
func claimArgs(reqs []meshd.ClaimRequest) ([]any, int) {
	var (
		idx, lim, tIdx                        []int32
		mesh, claimer, statusOf, prios, tSpec []string
		lease                                 []float64
	)
	for i, req := range reqs {
		if len(req.Priorities) == 0 {
			continue
		}
		ps := make([]string, len(req.Priorities))
		for j, p := range req.Priorities {
			ps[j] = string(p)
		}
		l := req.Lease
		if l <= 0 {
			l = DefaultClaimLease
		}
		idx = append(idx, int32(i))
		mesh = append(mesh, req.MeshID)
		claimer = append(claimer, req.ClaimerPresenceID)
		lim = append(lim, int32(max(req.Limit, 0)))
		statusOf = append(statusOf, req.StatusPresenceID)
		prios = append(prios, "{"+strings.Join(ps, ",")+"}")
		lease = append(lease, secs(l))
		for _, t := range claimTargets(req) {
			tIdx = append(tIdx, int32(i))
			tSpec = append(tSpec, t)
		}
	}
	return []any{idx, mesh, claimer, lim, statusOf, prios, tIdx, tSpec, lease}, len(idx)
}

// claimRows runs the claim; requests with Refresh first get the JSONL
// status fallback (B.6.3) applied to their presences — one statement per
// distinct inferred status and window — in the same network round trip (a
// pgx batch: the refreshes commit first, so the claim reads their result).
func (s *Store) claimRows(ctx context.Context, reqs []meshd.ClaimRequest, args []any) (pgx.Rows, error) {
	type refresh struct {
		inferred meshd.Status
		window   time.Duration
	}
	var order []refresh
	byKind := map[refresh][]string{}
	for _, req := range reqs {
		if req.Refresh == nil || req.StatusPresenceID == "" || len(req.Priorities) == 0 {
			continue
		}
		k := refresh{req.Refresh.Inferred, req.Refresh.FreshWindow}
		if !k.inferred.Valid() || k.inferred == meshd.StatusDND {
			k.inferred = meshd.StatusIdle
		}
		if _, ok := byKind[k]; !ok {
			order = append(order, k)
		}
		byKind[k] = append(byKind[k], req.StatusPresenceID)
	}
	if len(order) == 0 {
		return s.claims.Query(ctx, claimSQL, args...)
	}
	b := &pgx.Batch{}
	for _, k := range order {
		b.Queue(writeStatusSQL(refreshAnyPred), string(k.inferred), string(meshd.SourceJSONL), secs(k.window), byKind[k])
	}
	b.Queue(claimSQL, args...)
	br := s.claims.SendBatch(ctx, b)
	for range order {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, fmt.Errorf("refresh status: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// batchRows closes the batch once its last result's rows are closed.
type batchRows struct {
	pgx.Rows
	br pgx.BatchResults
}

func (r *batchRows) Close() {
	r.Rows.Close()
	_ = r.br.Close()
}

// claimTargets lists every target_spec the claiming connection receives.
func claimTargets(req meshd.ClaimRequest) []string {
	t := []string{"*", "@all"}
	if req.MemberPubkey != "" {
		t = append(t, req.MemberPubkey)
	}
	if req.SessionPubkey != "" {
		t = append(t, req.SessionPubkey)
	}
	seen := map[string]bool{}
	for _, g := range req.Groups {
		for _, a := range groupAncestors(g) {
			if !seen[a] {
				seen[a] = true
				t = append(t, "@"+a)
			}
		}
	}
	return t
}

// groupAncestors returns g and each of its non-empty ancestor paths:
// "a/b/c" → "a/b/c", "a/b", "a" (A.1 hierarchical groups).
func groupAncestors(g string) []string {
	if g == "" {
		return nil
	}
	out := []string{g}
	for i := len(g) - 1; i > 0; i-- {
		if g[i] == '/' && g[i-1] != '/' {
			out = append(out, g[:i])
		}
	}
	return out
}

// MarkDelivered sets delivered_at = now on the given rows that are still
// undelivered (the push of a non-acking client was written, A.3-4).
func (s *Store) MarkDelivered(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.lease.Exec(ctx, markDeliveredSQL, ids)
	if err != nil {
		return fmt.Errorf("mark delivered: %w", err)
	}
	return nil
}

const markDeliveredSQL = "UPDATE mesh.message_queue q SET delivered_at = now() WHERE q.id = ANY($1) AND " + pendingSQL

// pendingSQL is `q.delivered_at IS NULL` for the statements that address
// rows by id (acks, delivered marks): written so that it does not imply
// the predicate of the pending-only indexes, which the planner could
// otherwise walk whole and filter by id. It did, on the statistics of a
// young queue or any queue before a burst (few pending rows): 1,518 index
// entries and 132 ms for an ack batch of 137 (issue 10); the primary key is
// the only way left (TestAckPlansReadByKey).
const pendingSQL = `COALESCE(q.delivered_at, 'infinity') = 'infinity'`

// ReleaseClaims clears the claim of every undelivered row claimed by
// req.ClaimerPresenceID (a socket that closed before its pushes were
// written), so the rows are claimable again at once instead of after the
// lease. It reads req's targets (claimTargets) through
// message_queue_pending_target_idx, as the claim does: claim_id has no
// index, so claims stay HOT updates (migration 0020). A row claimed under a
// target the socket no longer has (its groups changed) waits for its lease.
func (s *Store) ReleaseClaims(ctx context.Context, req meshd.ClaimRequest) (int64, error) {
	if req.ClaimerPresenceID == "" {
		return 0, nil
	}
	tag, err := s.lease.Exec(ctx, releaseClaimsSQL, req.MeshID, claimTargets(req), []string{req.ClaimerPresenceID})
	if err != nil {
		return 0, fmt.Errorf("release claims: %w", err)
	}
	return tag.RowsAffected(), nil
}

const releaseClaimsSQL = `UPDATE mesh.message_queue SET claimed_at = NULL, claim_id = NULL, claim_expires_at = NULL
WHERE mesh_id = $1 AND target_spec = ANY($2::text[]) AND delivered_at IS NULL AND claim_id = ANY($3::text[])`

// ClientAck marks delivered the undelivered rows of meshID with id =
// brokerID or client_message_id = clientID (empty ids match nothing) whose
// target is one of keys, `*`, `@…` or `#…` (B.4.4). Returns the number of
// rows marked.
func (s *Store) ClientAck(ctx context.Context, meshID string, keys []string, clientID, brokerID string) (int64, error) {
	if clientID == "" && brokerID == "" {
		return 0, nil
	}
	if keys == nil {
		keys = []string{}
	}
	tag, err := s.lease.Exec(ctx, `
UPDATE mesh.message_queue SET delivered_at = now()
WHERE mesh_id = $1 AND delivered_at IS NULL
	AND (id = $2 OR client_message_id = $3)
	AND (target_spec = ANY($4::text[]) OR target_spec = '*' OR target_spec LIKE '@%' OR target_spec LIKE '#%')`,
		meshID, nullIfEmpty(brokerID), nullIfEmpty(clientID), keys)
	if err != nil {
		return 0, fmt.Errorf("client ack: %w", err)
	}
	return tag.RowsAffected(), nil
}

// PendingTargets lists the distinct targets of claimable rows (undelivered,
// unclaimed or claim expired) in the given meshes, so the periodic re-drain
// can wake their recipients and no row is stranded by a lost doorbell
// (A.3-5).
func (s *Store) PendingTargets(ctx context.Context, meshIDs []string) ([]meshd.TargetRef, error) {
	if len(meshIDs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
SELECT DISTINCT mesh_id, target_spec FROM mesh.message_queue
WHERE mesh_id = ANY($1) AND delivered_at IS NULL
	AND (claimed_at IS NULL OR claim_expires_at IS NULL OR claim_expires_at < now())
ORDER BY mesh_id, target_spec`, meshIDs)
	if err != nil {
		return nil, fmt.Errorf("pending targets: %w", err)
	}
	var out []meshd.TargetRef
	var t meshd.TargetRef
	_, err = pgx.ForEachRow(rows, []any{&t.MeshID, &t.TargetSpec}, func() error {
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pending targets: %w", err)
	}
	return out, nil
}

// FindMessage resolves a message_status id within meshID (B.4.4): 32 chars
// (or more) is an exact id; shorter is a prefix (LIKE 'prefix%', at most 2
// rows read). A row of another mesh is meshd.ErrNotFound; a prefix matching
// two rows is meshd.ErrAmbiguous. Shape validation (8-32 base62) is the
// caller's; LIKE metacharacters in id are escaped here regardless.
func (s *Store) FindMessage(ctx context.Context, meshID, id string) (meshd.QueuedMessage, error) {
	if id == "" {
		return meshd.QueuedMessage{}, fmt.Errorf("find message: %w", meshd.ErrNotFound)
	}
	where := "mesh_id = $1 AND id = $2"
	arg := id
	if len(id) < 32 {
		where = `mesh_id = $1 AND id LIKE $2 ESCAPE '\'`
		arg = escapeLike(id) + "%"
	}
	rows, err := s.pool.Query(ctx, `
SELECT id, mesh_id, sender_member_id, COALESCE(sender_session_pubkey, ''), target_spec, priority, nonce,
	ciphertext, COALESCE(client_message_id, ''), COALESCE(request_fingerprint, ''), created_at, delivered_at
FROM mesh.message_queue WHERE `+where+` ORDER BY id LIMIT 2`, meshID, arg)
	if err != nil {
		return meshd.QueuedMessage{}, fmt.Errorf("find message: %w", err)
	}
	var found []meshd.QueuedMessage
	var m meshd.QueuedMessage
	_, err = pgx.ForEachRow(rows, []any{&m.ID, &m.MeshID, &m.SenderMemberID, &m.SenderSessionPubkey, &m.TargetSpec,
		&m.Priority, &m.Nonce, &m.Ciphertext, &m.ClientMessageID, &m.RequestFingerprint, &m.CreatedAt, &m.DeliveredAt},
		func() error {
			found = append(found, m)
			return nil
		})
	switch {
	case err != nil:
		return meshd.QueuedMessage{}, fmt.Errorf("find message: %w", err)
	case len(found) == 0:
		return meshd.QueuedMessage{}, fmt.Errorf("find message: %w", meshd.ErrNotFound)
	case len(found) > 1:
		return meshd.QueuedMessage{}, fmt.Errorf("find message: %w", meshd.ErrAmbiguous)
	}
	return found[0], nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}
