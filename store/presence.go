package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

// SQLSTATEs raised by mesh.attach_presence (migration 0022).
const (
	stateMeshArchived   = "MS001"
	stateCapacity       = "MS002"
	stateMemberCapacity = "MS003"
)

// Attach reattaches or creates the presence for a successful hello in one
// statement, mesh.attach_presence (migrations 0022, 0023). No per-mesh lock:
// the member's row is locked (reattach, dedup and the member cap are
// serialized per member) and a new presence takes a free slot of the mesh,
// unique among its live rows, so MaxPerMesh is exact across replicas while
// hellos of one mesh run in parallel (B.2 steps 4-6, B.3, A.3-7).
//
// Reattach: a live presence of the same member (member_id) with the same
// session pubkey when the request has one; when neither has one, the same
// session id. Without TakeOverOnline only a grace-leased presence matches
// (B.18-29). A reattach sets node, socket, cwd, session id and display name
// (when non-empty), clears the lease, bumps last_ping_at, releases the old
// socket's claims and never fails on capacity; an online presence taken over
// reports its previous socket in Replaced when it differs.
//
// Otherwise: live presences of the same member with the same session id are
// disconnected (no lease, so no peer_left), their claims released, and
// reported in Replaced; then the member's live presences are counted against
// MaxPerMember and the mesh's (grace leases included) against MaxPerMesh
// (≤ 0: no cap), evicting grace leases as makeRoom rules say (A.3-22:
// the member's own oldest first; at the mesh cap the owner or an admin,
// Privileged, also the mesh's oldest) → meshd.ErrMemberCapacity or
// meshd.ErrCapacity, which roll everything back; then the presence is
// inserted (visible, profile {} unless given) with the newest pending_status
// for (pid, cwd) within PendingWindow (0: 10 s) as its status, source hook,
// and every pending row of (pid, cwd) in the window is marked applied.
//
// Matching on the member as well as the keys is stricter than upstream: the
// hello sessionPubkey and every sessionId are unsigned, so without it one
// member could take over or close another member's presence.
func (s *Store) Attach(ctx context.Context, req meshd.AttachRequest) (meshd.AttachResult, error) {
	return attach(ctx, s.pool, req)
}

// queryer is a pool or a transaction (a test holds an Attach open in one).
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func attach(ctx context.Context, q queryer, req meshd.AttachRequest) (meshd.AttachResult, error) {
	p := &req.Presence
	if err := validAttach(p); err != nil {
		return meshd.AttachResult{}, fmt.Errorf("attach: %w", err)
	}
	groups, err := json.Marshal(nonNilGroups(p.Groups))
	if err != nil {
		return meshd.AttachResult{}, fmt.Errorf("attach: %w", err)
	}
	profile := "{}"
	if len(p.Profile) > 0 {
		profile = string(p.Profile)
	}
	window := req.PendingWindow
	if window <= 0 {
		window = DefaultPendingWindow
	}
	rows, err := q.Query(ctx, `SELECT * FROM mesh.attach_presence($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb,
	$10, $11, $12, $13, $14, $15, $16, $17::jsonb, $18, $19, $20, $21, $22, $23)`,
		meshd.NewID(), p.MeshID, p.MemberID, p.SessionID, nullIfEmpty(p.SessionPubkey),
		nullIfEmpty(p.DisplayName), p.PID, p.CWD, string(groups), nullIfEmpty(p.Role), p.NodeID,
		p.SocketID, nullIfEmpty(p.Hostname), nullIfEmpty(p.PeerType), nullIfEmpty(p.Channel), nullIfEmpty(p.Model), profile,
		p.Ephemeral, req.TakeOverOnline, req.MaxPerMesh, req.MaxPerMember, req.Privileged, secs(window))
	if err != nil {
		return meshd.AttachResult{}, fmt.Errorf("attach: %w", err)
	}
	var res meshd.AttachResult
	var kind, oldSocket, oldNode string
	var r presenceRow
	dest := append([]any{&kind, &oldSocket, &oldNode}, r.dest()...)
	_, err = pgx.ForEachRow(rows, dest, func() error {
		switch kind {
		case "presence", "reattached":
			res.Presence = r.presence()
			res.Reattached = kind == "reattached"
		case "replaced":
			res.Replaced = append(res.Replaced, meshd.Replaced{PresenceID: r.p.ID, SocketID: oldSocket, NodeID: oldNode})
		case "evicted":
			res.Evicted = append(res.Evicted, r.presence())
		}
		r.p.Groups = nil
		return nil
	})
	if err != nil {
		return meshd.AttachResult{}, fmt.Errorf("attach: %w", attachError(err))
	}
	return res, nil
}

// attachError maps attach_presence's SQLSTATEs to the meshd errors.
func attachError(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case stateMeshArchived:
		return meshd.ErrMeshArchived
	case stateCapacity:
		return meshd.ErrCapacity
	case stateMemberCapacity:
		return meshd.ErrMemberCapacity
	}
	return err
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
