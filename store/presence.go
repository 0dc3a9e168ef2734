package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
)

// DefaultPendingWindow bounds the age of a pending hook status applied to a
// new presence when AttachRequest.PendingWindow is zero (B.6.5 PENDING_TTL_MS).
const DefaultPendingWindow = 10 * time.Second

// presenceCols selects a presence row aliased p joined to its member m, in
// the order presenceDest scans. DisplayName is the effective one: the
// presence's, else the member's.
const presenceCols = `p.id, p.mesh_id, p.member_id, m.peer_pubkey, p.session_id, COALESCE(p.session_pubkey, ''),
	COALESCE(NULLIF(p.display_name, ''), m.display_name), p.pid, p.cwd, p.status, p.status_source,
	p.status_updated_at, COALESCE(p.summary, ''), p.groups, p.role, p.node_id, p.socket_id,
	COALESCE(p.hostname, ''), COALESCE(p.peer_type, ''), COALESCE(p.channel, ''), COALESCE(p.model, ''),
	p.visible, p.profile, p.connected_at, p.last_ping_at, p.lease_until, p.disconnected_at`

type presenceRow struct {
	p       meshd.Presence
	profile []byte
}

func (r *presenceRow) dest() []any {
	p := &r.p
	return []any{&p.ID, &p.MeshID, &p.MemberID, &p.MemberPubkey, &p.SessionID, &p.SessionPubkey,
		&p.DisplayName, &p.PID, &p.CWD, &p.Status, &p.StatusSource,
		&p.StatusUpdatedAt, &p.Summary, &p.Groups, &p.Role, &p.NodeID, &p.SocketID,
		&p.Hostname, &p.PeerType, &p.Channel, &p.Model,
		&p.Visible, &r.profile, &p.ConnectedAt, &p.LastPingAt, &p.LeaseUntil, &p.DisconnectedAt}
}

func (r *presenceRow) presence() meshd.Presence {
	p := r.p
	p.Profile = json.RawMessage(append([]byte(nil), r.profile...))
	if p.Groups == nil {
		p.Groups = []meshd.Group{}
	}
	return p
}

func scanPresences(rows pgx.Rows) ([]meshd.Presence, error) {
	var out []meshd.Presence
	var r presenceRow
	_, err := pgx.ForEachRow(rows, r.dest(), func() error {
		out = append(out, r.presence())
		r.p.Groups = nil
		return nil
	})
	return out, err
}

// presenceLockKey is the per-mesh advisory lock key that serializes Attach
// (capacity, reattach, dedup) across replicas: the first 8 bytes of
// SHA-256("presence:"+meshID), big-endian, made non-negative. The prefix
// keeps it apart from the audit key ("audit:"+meshID, B.8).
func presenceLockKey(meshID string) int64 {
	sum := sha256.Sum256([]byte("presence:" + meshID))
	return int64(binary.BigEndian.Uint64(sum[:8]) & 0x7fffffffffffffff)
}

// Attach reattaches or creates the presence for a successful hello, in one
// transaction holding the mesh's advisory lock, so the capacity count is
// exact across replicas (B.2 steps 4-6, B.3, A.3-7).
//
// Reattach: a live presence of the same member (member_id) with the same
// session pubkey when the request has one; when neither has one, the same
// session id. Without TakeOverOnline only a grace-leased presence matches
// (B.18-29). A reattach sets node, socket, cwd, session id and display name
// (when non-empty), clears the lease, bumps last_ping_at and never fails on
// capacity; an online presence taken over reports its previous socket in
// Replaced when it differs.
//
// Otherwise: live presences of the same member with the same session id are
// disconnected (no lease, so no peer_left) and reported in Replaced; then the
// live presences of the mesh are counted (grace leases included) against
// MaxPerMesh (≤ 0: no cap) → meshd.ErrCapacity; then the presence is inserted
// (status idle/jsonl, visible, profile {} unless given) and the newest
// pending_status for (pid, cwd) within PendingWindow (0: 10 s) is applied
// with source hook; every pending row of (pid, cwd) in the window is marked
// applied.
//
// Matching on the member as well as the keys is stricter than upstream: the
// hello sessionPubkey and every sessionId are unsigned, so without it one
// member could take over or close another member's presence.
func (s *Store) Attach(ctx context.Context, req meshd.AttachRequest) (meshd.AttachResult, error) {
	if err := validAttach(&req.Presence); err != nil {
		return meshd.AttachResult{}, fmt.Errorf("attach: %w", err)
	}
	var res meshd.AttachResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		res = meshd.AttachResult{}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", presenceLockKey(req.Presence.MeshID)); err != nil {
			return err
		}
		var archived bool
		err := tx.QueryRow(ctx, "SELECT archived_at IS NOT NULL FROM mesh.mesh WHERE id = $1", req.Presence.MeshID).Scan(&archived)
		if errors.Is(err, pgx.ErrNoRows) || archived {
			return meshd.ErrMeshArchived
		}
		if err != nil {
			return err
		}
		done, err := reattachLocked(ctx, tx, &req, &res)
		if err != nil || done {
			return err
		}
		return createLocked(ctx, tx, &req, &res)
	})
	if err != nil {
		return meshd.AttachResult{}, fmt.Errorf("attach: %w", err)
	}
	return res, nil
}

func validAttach(p *meshd.Presence) error {
	switch {
	case p.MeshID == "":
		return errors.New("presence MeshID is required")
	case p.MemberID == "":
		return errors.New("presence MemberID is required")
	case p.NodeID == "" || p.SocketID == "":
		return errors.New("presence NodeID and SocketID are required")
	}
	return nil
}

// reattachLocked takes over a matching presence; done reports whether one
// was found. The mesh lock must be held.
func reattachLocked(ctx context.Context, tx pgx.Tx, req *meshd.AttachRequest, res *meshd.AttachResult) (done bool, err error) {
	p := &req.Presence
	match := "p.session_pubkey = $3"
	key := p.SessionPubkey
	if p.SessionPubkey == "" {
		match, key = "p.session_pubkey IS NULL AND p.session_id = $3", p.SessionID
	}
	var old meshd.Replaced
	var online bool
	err = tx.QueryRow(ctx, `
SELECT p.id, p.socket_id, p.node_id, p.lease_until IS NULL
FROM mesh.presence p
WHERE p.mesh_id = $1 AND p.member_id = $2 AND `+match+`
	AND p.disconnected_at IS NULL AND ($4 OR p.lease_until IS NOT NULL)
ORDER BY p.connected_at DESC, p.id DESC
LIMIT 1
FOR UPDATE`, p.MeshID, p.MemberID, key, req.TakeOverOnline).Scan(&old.PresenceID, &old.SocketID, &old.NodeID, &online)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var r presenceRow
	err = tx.QueryRow(ctx, `
UPDATE mesh.presence p SET node_id = $2, socket_id = $3, cwd = $4,
	display_name = COALESCE(NULLIF($5, ''), p.display_name), session_id = $6,
	lease_until = NULL, last_ping_at = now()
FROM mesh.member m
WHERE p.id = $1 AND m.id = p.member_id
RETURNING `+presenceCols, old.PresenceID, p.NodeID, p.SocketID, p.CWD, p.DisplayName, p.SessionID).Scan(r.dest()...)
	if err != nil {
		return false, err
	}
	res.Presence = r.presence()
	res.Reattached = true
	// Rows the old socket claimed but may never have written (it died or is
	// being replaced) are claimable again at once: the reattaching client
	// gets them now, not after the claim lease (A.3-5).
	pres := res.Presence
	targets := claimTargets(meshd.ClaimRequest{MemberPubkey: pres.MemberPubkey, SessionPubkey: pres.SessionPubkey,
		Groups: groupNameList(pres.Groups)})
	if err := releaseClaimsTx(ctx, tx, pres.MeshID, targets, []string{old.SocketID}); err != nil {
		return false, err
	}
	if online && old.SocketID != p.SocketID {
		res.Replaced = append(res.Replaced, old)
	}
	return true, nil
}

// createLocked runs session-id dedup, the capacity check and the insert.
// The mesh lock must be held.
func createLocked(ctx context.Context, tx pgx.Tx, req *meshd.AttachRequest, res *meshd.AttachResult) error {
	p := &req.Presence
	replaced, err := dedupSessionLocked(ctx, tx, p)
	if err != nil {
		return err
	}
	res.Replaced = replaced
	if err := makeRoomLocked(ctx, tx, req, res); err != nil {
		return err // rolls the dedup back too
	}
	id, err := insertPresence(ctx, tx, p)
	if err != nil {
		return err
	}
	if err := applyPendingStatus(ctx, tx, id, p, req.PendingWindow); err != nil {
		return err
	}
	var r presenceRow
	err = tx.QueryRow(ctx, `SELECT `+presenceCols+`
FROM mesh.presence p JOIN mesh.member m ON m.id = p.member_id WHERE p.id = $1`, id).Scan(r.dest()...)
	if err != nil {
		return err
	}
	res.Presence = r.presence()
	return nil
}

// makeRoomLocked enforces MaxPerMember and MaxPerMesh for a new presence
// (A.3-22). Grace leases count toward both caps, so they are what gives way:
// a member at its own cap evicts its oldest grace lease; at the mesh cap a
// member with a grace lease evicts its own oldest one, and the owner or an
// admin (Privileged) evicts the oldest grace lease of the mesh. Evicted rows
// are disconnected and reported for peer_left. The mesh lock must be held.
func makeRoomLocked(ctx context.Context, tx pgx.Tx, req *meshd.AttachRequest, res *meshd.AttachResult) error {
	p := &req.Presence
	if req.MaxPerMember > 0 {
		var mine int
		err := tx.QueryRow(ctx, "SELECT count(*) FROM mesh.presence WHERE mesh_id = $1 AND member_id = $2 AND disconnected_at IS NULL",
			p.MeshID, p.MemberID).Scan(&mine)
		if err != nil {
			return err
		}
		if over := mine - req.MaxPerMember + 1; over > 0 {
			ev, err := evictOldestLeases(ctx, tx, p.MeshID, p.MemberID, over)
			if err != nil {
				return err
			}
			res.Evicted = append(res.Evicted, ev...)
			if len(ev) < over {
				return meshd.ErrMemberCapacity
			}
		}
	}
	if req.MaxPerMesh <= 0 {
		return nil
	}
	var live int
	err := tx.QueryRow(ctx,
		"SELECT count(*) FROM mesh.presence WHERE mesh_id = $1 AND disconnected_at IS NULL", p.MeshID).Scan(&live)
	if err != nil {
		return err
	}
	over := live - req.MaxPerMesh + 1
	if over <= 0 {
		return nil
	}
	ev, err := evictOldestLeases(ctx, tx, p.MeshID, p.MemberID, over)
	if err != nil {
		return err
	}
	res.Evicted = append(res.Evicted, ev...)
	if over -= len(ev); over > 0 && req.Privileged {
		ev, err = evictOldestLeases(ctx, tx, p.MeshID, "", over)
		if err != nil {
			return err
		}
		res.Evicted = append(res.Evicted, ev...)
		over -= len(ev)
	}
	if over > 0 {
		return meshd.ErrCapacity
	}
	return nil
}

// evictOldestLeases disconnects up to n grace-leased presences of meshID
// (of memberID when it is not empty), oldest lease first, and returns them.
func evictOldestLeases(ctx context.Context, tx pgx.Tx, meshID, memberID string, n int) ([]meshd.Presence, error) {
	rows, err := tx.Query(ctx, `
WITH victim AS (
	SELECT id FROM mesh.presence
	WHERE mesh_id = $1 AND ($2 = '' OR member_id = $2) AND disconnected_at IS NULL AND lease_until IS NOT NULL
	ORDER BY lease_until, connected_at, id
	LIMIT $3
	FOR UPDATE
)
UPDATE mesh.presence p SET disconnected_at = now()
FROM victim v, mesh.member m
WHERE p.id = v.id AND m.id = p.member_id
RETURNING `+presenceCols, meshID, memberID, n)
	if err != nil {
		return nil, err
	}
	return scanPresences(rows)
}

// dedupSessionLocked disconnects the member's other live presences with the
// same session id (B.2 step 5): their sockets are closed with
// session_replaced and, having no lease, they never produce peer_left.
func dedupSessionLocked(ctx context.Context, tx pgx.Tx, p *meshd.Presence) ([]meshd.Replaced, error) {
	if p.SessionID == "" {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `
UPDATE mesh.presence SET disconnected_at = now()
WHERE mesh_id = $1 AND member_id = $2 AND session_id = $3 AND disconnected_at IS NULL
RETURNING id, socket_id, node_id`, p.MeshID, p.MemberID, p.SessionID)
	if err != nil {
		return nil, err
	}
	var out []meshd.Replaced
	var r meshd.Replaced
	_, err = pgx.ForEachRow(rows, []any{&r.PresenceID, &r.SocketID, &r.NodeID}, func() error {
		out = append(out, r)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].PresenceID < out[j].PresenceID })
	if err != nil {
		return nil, err
	}
	sockets := make([]string, 0, len(out))
	for _, r := range out {
		sockets = append(sockets, r.SocketID)
	}
	return out, releaseClaimsTx(ctx, tx, p.MeshID, nil, sockets)
}

// releaseClaimsTx clears the claims of undelivered rows of meshID held by
// sockets. claim_id has no index (migration 0020, HOT claims): with targets
// the rows are read through message_queue_pending_target_idx as the claim
// reads them; without (a replaced session, whose old key may differ) all
// pending rows of the mesh are read.
func releaseClaimsTx(ctx context.Context, tx pgx.Tx, meshID string, targets, sockets []string) error {
	if len(sockets) == 0 {
		return nil
	}
	if targets != nil {
		_, err := tx.Exec(ctx, releaseClaimsSQL, meshID, targets, sockets)
		return err
	}
	_, err := tx.Exec(ctx, `UPDATE mesh.message_queue SET claimed_at = NULL, claim_id = NULL, claim_expires_at = NULL
WHERE mesh_id = $2 AND claim_id = ANY($1) AND delivered_at IS NULL`, sockets, meshID)
	return err
}

func insertPresence(ctx context.Context, tx pgx.Tx, p *meshd.Presence) (string, error) {
	groups, err := json.Marshal(nonNilGroups(p.Groups))
	if err != nil {
		return "", err
	}
	profile := "{}"
	if len(p.Profile) > 0 {
		profile = string(p.Profile)
	}
	id := meshd.NewID()
	_, err = tx.Exec(ctx, `
INSERT INTO mesh.presence (id, mesh_id, member_id, session_id, session_pubkey, display_name, pid, cwd,
	groups, role, node_id, socket_id, hostname, peer_type, channel, model, profile, ephemeral)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, COALESCE($10, 'session'), $11, $12, $13, $14, $15, $16, $17::jsonb, $18)`,
		id, p.MeshID, p.MemberID, p.SessionID, nullIfEmpty(p.SessionPubkey), nullIfEmpty(p.DisplayName), p.PID, p.CWD,
		string(groups), nullIfEmpty(p.Role), p.NodeID, p.SocketID, nullIfEmpty(p.Hostname), nullIfEmpty(p.PeerType),
		nullIfEmpty(p.Channel), nullIfEmpty(p.Model), profile, p.Ephemeral)
	return id, err
}

// applyPendingStatus applies the newest pending hook status of (pid, cwd)
// within window to the new presence (B.6.5) and marks every pending row of
// the window applied, so an older one cannot be picked up later.
func applyPendingStatus(ctx context.Context, tx pgx.Tx, presenceID string, p *meshd.Presence, window time.Duration) error {
	if window <= 0 {
		window = DefaultPendingWindow
	}
	var st meshd.Status
	err := tx.QueryRow(ctx, `
WITH cand AS (
	SELECT id, status, created_at FROM mesh.pending_status
	WHERE pid = $1 AND cwd = $2 AND applied_at IS NULL
		AND created_at >= now() - make_interval(secs => $3::float8)
	FOR UPDATE SKIP LOCKED
), used AS (
	UPDATE mesh.pending_status ps SET applied_at = now() FROM cand WHERE ps.id = cand.id
)
SELECT status FROM cand ORDER BY created_at DESC, id DESC LIMIT 1`, p.PID, p.CWD, secs(window)).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = writeStatusOne(ctx, tx, presenceID, st, meshd.SourceHook, 0)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return err
}

// CountLive counts presences of meshID that are not disconnected (grace
// leases included), on every node.
func (s *Store) CountLive(ctx context.Context, meshID string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx,
		"SELECT count(*) FROM mesh.presence WHERE mesh_id = $1 AND disconnected_at IS NULL", meshID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count live: %w", err)
	}
	return n, nil
}

// CapacityExempt reports whether a hello with these (still unverified)
// claims may go on to the signature checks although meshID is at
// MAX_CONNECTIONS_PER_MESH, because Attach can make room for it (A.3-22):
// the claimed member is active and is the owner or an admin, or has a grace
// lease of its own, or has a live presence (on any node, a dead one
// included) with this session (session pubkey when given, else session id)
// that the hello would take over. A forger then fails the signature checks.
func (s *Store) CapacityExempt(ctx context.Context, meshID, memberPubkey, sessionPubkey, sessionID string) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `
SELECT EXISTS (
	SELECT 1 FROM mesh.member m JOIN mesh.mesh ms ON ms.id = m.mesh_id
	WHERE m.mesh_id = $1 AND m.peer_pubkey = $2 AND m.revoked_at IS NULL
		AND (m.role = 'admin' OR (ms.owner_user_id IS NOT NULL AND ms.owner_user_id <> '' AND ms.owner_user_id = m.user_id))
) OR EXISTS (
	SELECT 1 FROM mesh.presence p JOIN mesh.member m ON m.id = p.member_id
	WHERE p.mesh_id = $1 AND m.peer_pubkey = $2 AND p.disconnected_at IS NULL
		AND (p.lease_until IS NOT NULL
			OR ($3 <> '' AND p.session_pubkey = $3)
			OR ($4 <> '' AND p.session_id = $4)))`,
		meshID, memberPubkey, sessionPubkey, sessionID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("capacity exempt: %w", err)
	}
	return ok, nil
}

// Detach starts the grace lease of presenceID (lease_until = now + grace) if
// socketID still owns it and it is live; a close from a socket that was
// already replaced is ignored. Reports whether the lease was set.
//
// An ephemeral presence (A.3-32) ends at once instead (disconnected, no
// lease, so never announced by eviction) and reports false: it leaves no
// peer_state.
func (s *Store) Detach(ctx context.Context, presenceID, socketID string, grace time.Duration) (bool, error) {
	var leased bool
	err := s.pool.QueryRow(ctx, `
UPDATE mesh.presence SET lease_until = CASE WHEN ephemeral THEN NULL ELSE now() + make_interval(secs => $3::float8) END,
	disconnected_at = CASE WHEN ephemeral THEN now() END
WHERE id = $1 AND socket_id = $2 AND disconnected_at IS NULL
RETURNING NOT ephemeral`, presenceID, socketID, secs(grace)).Scan(&leased)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("detach: %w", err)
	}
	return leased, nil
}

// Touch records a pong: last_ping_at = now, if socketID still owns the live
// presence.
func (s *Store) Touch(ctx context.Context, presenceID, socketID string) error {
	_, err := s.pool.Exec(ctx, `
UPDATE mesh.presence SET last_ping_at = now()
WHERE id = $1 AND socket_id = $2 AND disconnected_at IS NULL`, presenceID, socketID)
	if err != nil {
		return fmt.Errorf("touch: %w", err)
	}
	return nil
}

// ListPeers returns the live presences of meshID (grace leases and
// invisible ones included; the broker filters; ephemeral ones never, A.3-32)
// ordered by connected_at, with
// MemberPubkey and the effective DisplayName (B.6.8).
func (s *Store) ListPeers(ctx context.Context, meshID string) ([]meshd.Presence, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+presenceCols+`
FROM mesh.presence p JOIN mesh.member m ON m.id = p.member_id
WHERE p.mesh_id = $1 AND p.disconnected_at IS NULL AND NOT p.ephemeral
ORDER BY p.connected_at, p.id`, meshID)
	if err != nil {
		return nil, fmt.Errorf("list peers: %w", err)
	}
	out, err := scanPresences(rows)
	if err != nil {
		return nil, fmt.Errorf("list peers: %w", err)
	}
	return out, nil
}

func groupNameList(gs []meshd.Group) []string {
	out := make([]string, 0, len(gs))
	for _, g := range gs {
		out = append(out, g.Name)
	}
	return out
}
