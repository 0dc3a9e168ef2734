package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Enrollment: how a mesh, its invites and its members come to exist
// (docs/protocol.md B.9.5), the CLI grants write path (B.7) and the CLI mesh
// listing (B.9.4). Every statement that must be atomic across replicas runs
// in one transaction or one statement.
//
// Locks: CreateOwnedMesh takes pg_advisory_xact_lock on a hash of
// "meshd:slug:<base>" (held alone, never with another advisory lock); Join
// locks one invite row FOR UPDATE and then inserts a member row.

// Join outcome codes (B.9.5), returned by Join in this order of checks.
// JoinPayloadMismatch is meshd's own: the signed payload must be the one the
// invite row was issued with, so an old admin payload cannot ride on a fresh
// member invite's token.
const (
	JoinMeshNotFound    = "mesh_not_found"
	JoinMissingOwnerKey = "mesh_missing_owner_key"
	JoinOwnerMismatch   = "invite_owner_mismatch"
	JoinInviteNotFound  = "invite_not_found"
	JoinMeshMismatch    = "invite_mesh_mismatch"
	JoinPayloadMismatch = "invite_payload_mismatch"
	JoinInviteRevoked   = "invite_revoked"
	JoinInviteExpired   = "invite_expired"
	JoinInviteExhausted = "invite_exhausted"
	// JoinMemberBanned is meshd's own: the pubkey has a revoked (banned)
	// member row in the mesh and no active one, so a still-valid invite
	// does not let it back in until unban (issue 12 item 3).
	JoinMemberBanned       = "member_banned"
	JoinMemberInsertFailed = "member_insert_failed"
)

const (
	// maxSlugSuffix is upstream's limit (B.9.5 step 2): -2 … -100, then 409.
	maxSlugSuffix = 100
	// createMeshAttempts bounds retries when concurrent creates keep taking
	// the slug this one chose.
	createMeshAttempts = 5
	// inviteCodeAttempts is one code plus upstream's 3 collision retries.
	inviteCodeAttempts = 4
)

// errMemberExists aborts a Join transaction whose member insert lost a race
// with a concurrent join of the same pubkey (through another invite).
var errMemberExists = errors.New("member exists")

// CreateOwnedMesh creates mesh m with its owner keys and the owner's member
// row in one transaction (B.9.5 step 2, A.3-16: nothing is written unless
// all of it is). m.Slug is the base slug: when a live mesh holds it, the
// first free of base-2 … base-100 is used and m.Slug updated. m.ID and
// owner.ID are set when empty; owner.MeshID is set to m.ID. ok is false,
// with nothing written, when the base and every suffix are taken.
func (s *Store) CreateOwnedMesh(ctx context.Context, m *meshd.Mesh, ownerSecretHex, rootKey string, owner *meshd.Member) (ok bool, err error) {
	base := m.Slug
	if m.ID == "" {
		m.ID = meshd.NewID()
	}
	if owner.ID == "" {
		owner.ID = meshd.NewID()
	}
	owner.MeshID = m.ID
	sealedSecret, err := s.kr.Seal(ownerSecretHex, aadOwnerSecret(m.ID))
	if err != nil {
		return false, fmt.Errorf("create owned mesh: %w", err)
	}
	sealedRoot, err := s.kr.Seal(rootKey, aadRootKey(m.ID))
	if err != nil {
		return false, fmt.Errorf("create owned mesh: %w", err)
	}
	for attempt := 0; attempt < createMeshAttempts; attempt++ {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			// Creates of one base slug take turns, so concurrent "Team"
			// creates get team, team-2, … instead of failing on the unique
			// index; only different bases can still collide (base "a-2"
			// against "a" + "-2"), which the retry loop covers.
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended('meshd:slug:' || $1, 0))", base); err != nil {
				return err
			}
			slug, err := freeSlug(ctx, tx, base)
			if err != nil || slug == "" {
				return err
			}
			m.Slug = slug
			if _, err := tx.Exec(ctx, `
INSERT INTO mesh.mesh (id, slug, name, owner_user_id, owner_pubkey, owner_secret_key, root_key)
VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				m.ID, m.Slug, m.Name, nullIfEmpty(m.OwnerUserID), m.OwnerPubkey, sealedSecret, sealedRoot); err != nil {
				return err
			}
			ok = true
			return insertMember(ctx, tx, owner)
		})
		if !isUniqueViolation(err) {
			break
		}
		ok = false // a concurrent create took the slug: look again
	}
	if err != nil {
		return false, fmt.Errorf("create owned mesh: %w", err)
	}
	if !ok {
		m.Slug = base
	}
	return ok, nil
}

// freeSlug returns the first of base, base-2 … base-100 that no live mesh
// holds, or "" when all are taken. Slugs are [a-z0-9-] so LIKE needs no
// escaping.
func freeSlug(ctx context.Context, tx pgx.Tx, base string) (string, error) {
	rows, err := tx.Query(ctx,
		"SELECT slug FROM mesh.mesh WHERE archived_at IS NULL AND (slug = $1 OR slug LIKE $1 || '-%')", base)
	if err != nil {
		return "", err
	}
	taken := map[string]bool{}
	var slug string
	if _, err := pgx.ForEachRow(rows, []any{&slug}, func() error { taken[slug] = true; return nil }); err != nil {
		return "", err
	}
	if !taken[base] {
		return base, nil
	}
	for i := 2; i <= maxSlugSuffix; i++ {
		if c := base + "-" + strconv.Itoa(i); !taken[c] {
			return c, nil
		}
	}
	return "", nil
}

// insertMember inserts the few columns enrollment sets.
func insertMember(ctx context.Context, tx pgx.Tx, m *meshd.Member) error {
	if m.ID == "" {
		m.ID = meshd.NewID()
	}
	_, err := tx.Exec(ctx, `
INSERT INTO mesh.member (id, mesh_id, user_id, peer_pubkey, display_name, role)
VALUES ($1, $2, $3, $4, $5, $6)`,
		m.ID, m.MeshID, nullIfEmpty(m.UserID), m.Pubkey, m.DisplayName, m.Role)
	return err
}

// MeshBySlug returns the live (non-archived) mesh with slug, or
// meshd.ErrNotFound.
func (s *Store) MeshBySlug(ctx context.Context, slug string) (meshd.Mesh, error) {
	var ms meshd.Mesh
	err := s.pool.QueryRow(ctx, `
SELECT id, COALESCE(slug, ''), name, COALESCE(owner_user_id, ''), COALESCE(owner_pubkey, ''), archived_at
FROM mesh.mesh WHERE slug = $1 AND archived_at IS NULL`, slug).
		Scan(&ms.ID, &ms.Slug, &ms.Name, &ms.OwnerUserID, &ms.OwnerPubkey, &ms.ArchivedAt)
	if err != nil {
		return meshd.Mesh{}, fmt.Errorf("mesh by slug: %w", notFound(err))
	}
	return ms, nil
}

// MeshByRef resolves what an operator typed: a mesh id (archived meshes
// included, their chains stay verifiable), else the slug of a live mesh.
// meshd.ErrNotFound when neither matches.
func (s *Store) MeshByRef(ctx context.Context, ref string) (meshd.Mesh, error) {
	var ms meshd.Mesh
	err := s.pool.QueryRow(ctx, `
SELECT id, COALESCE(slug, ''), name, COALESCE(owner_user_id, ''), COALESCE(owner_pubkey, ''), archived_at
FROM mesh.mesh WHERE id = $1 OR (slug = $1 AND archived_at IS NULL)
ORDER BY (id = $1) DESC LIMIT 1`, ref).
		Scan(&ms.ID, &ms.Slug, &ms.Name, &ms.OwnerUserID, &ms.OwnerPubkey, &ms.ArchivedAt)
	if err != nil {
		return meshd.Mesh{}, fmt.Errorf("mesh %q: %w", ref, notFound(err))
	}
	return ms, nil
}

// RenameMesh sets the name of the live mesh meshID (POST
// /cli/mesh/:slug/rename); the slug stays, since invites and links carry it.
// meshd.ErrNotFound when it is not live.
func (s *Store) RenameMesh(ctx context.Context, meshID, name string) error {
	tag, err := s.pool.Exec(ctx, "UPDATE mesh.mesh SET name = $2 WHERE id = $1 AND archived_at IS NULL", meshID, name)
	if err != nil {
		return fmt.Errorf("rename mesh: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return meshd.ErrNotFound
	}
	return nil
}

// ArchiveMesh sets archived_at on the live mesh meshID (DELETE
// /cli/mesh/:slug). Its slug becomes free; hellos and joins stop finding it.
// meshd.ErrNotFound when it is not live.
func (s *Store) ArchiveMesh(ctx context.Context, meshID string) error {
	// The UPDATE of the mesh row waits for every Attach in flight (each
	// holds the row FOR SHARE), so an Attach racing with the archive either
	// ran before (its presence is ended here) or sees archived_at.
	// Live presences and grace leases end without peer_left: the mesh is
	// gone and every socket is closed with mesh_archived (A.3-23).
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			"UPDATE mesh.mesh SET archived_at = now() WHERE id = $1 AND archived_at IS NULL", meshID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return meshd.ErrNotFound
		}
		_, err = tx.Exec(ctx,
			"UPDATE mesh.presence SET disconnected_at = now() WHERE mesh_id = $1 AND disconnected_at IS NULL", meshID)
		return err
	})
	if err != nil {
		return fmt.Errorf("archive mesh: %w", err)
	}
	return nil
}

// ArchivedMeshes returns those of meshIDs that are archived (or gone): each
// replica asks about the meshes it holds sockets of, so a socket whose
// mesh_archived close was lost on the fan-out is still closed.
func (s *Store) ArchivedMeshes(ctx context.Context, meshIDs []string) ([]string, error) {
	if len(meshIDs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `
SELECT x.id FROM unnest($1::text[]) AS x(id)
WHERE NOT EXISTS (SELECT 1 FROM mesh.mesh ms WHERE ms.id = x.id AND ms.archived_at IS NULL)`, meshIDs)
	if err != nil {
		return nil, fmt.Errorf("archived meshes: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("archived meshes: %w", err)
	}
	return out, nil
}

// UserMeshes calls fn for every live mesh userID owns or is an active
// member of (GET /cli/meshes), oldest membership first: role and joinedAt
// come from the user's earliest active member row (an owner without one is
// "admin" since the mesh's creation); members counts active member rows and
// active counts presences with a live socket (grace leases excluded).
func (s *Store) UserMeshes(ctx context.Context, userID string, fn func(ms meshd.Mesh, role string, joinedAt time.Time, members, active int)) error {
	rows, err := s.pool.Query(ctx, `
SELECT ms.id, COALESCE(ms.slug, ''), ms.name, COALESCE(ms.owner_user_id, ''), COALESCE(ms.owner_pubkey, ''),
	COALESCE(mm.role, 'admin'), COALESCE(mm.joined_at, ms.created_at),
	(SELECT count(*) FROM mesh.member x WHERE x.mesh_id = ms.id AND x.revoked_at IS NULL),
	(SELECT count(*) FROM mesh.presence p WHERE p.mesh_id = ms.id AND p.disconnected_at IS NULL AND p.lease_until IS NULL)
FROM mesh.mesh ms
LEFT JOIN LATERAL (
	SELECT m.role, m.joined_at FROM mesh.member m
	WHERE m.mesh_id = ms.id AND m.user_id = $1 AND m.revoked_at IS NULL
	ORDER BY m.joined_at, m.id LIMIT 1
) mm ON true
WHERE ms.archived_at IS NULL AND (ms.owner_user_id = $1 OR mm.role IS NOT NULL)
ORDER BY 7, ms.id`, userID)
	if err != nil {
		return fmt.Errorf("user meshes: %w", err)
	}
	var ms meshd.Mesh
	var role string
	var joined time.Time
	var members, active int
	_, err = pgx.ForEachRow(rows, []any{&ms.ID, &ms.Slug, &ms.Name, &ms.OwnerUserID, &ms.OwnerPubkey,
		&role, &joined, &members, &active}, func() error {
		fn(ms, role, joined, members, active)
		return nil
	})
	if err != nil {
		return fmt.Errorf("user meshes: %w", err)
	}
	return nil
}

// EnsureOwnerKeys returns the owner keypair (pubkey hex, secret hex) and
// root key of the live mesh meshID, first storing the given ones where they
// are missing (upstream's invite "self-heal", B.9.5 step 3): a mesh without
// an owner secret gets pubkey and secret together, one without a root key
// gets rootKey. One statement, so concurrent callers agree on the result.
// meshd.ErrNotFound when the mesh is not live.
func (s *Store) EnsureOwnerKeys(ctx context.Context, meshID, pubkey, secretHex, rootKey string) (string, string, string, error) {
	var pub, sec, root string
	secretHex, err := s.kr.Seal(secretHex, aadOwnerSecret(meshID))
	if err != nil {
		return "", "", "", fmt.Errorf("ensure owner keys: %w", err)
	}
	if rootKey, err = s.kr.Seal(rootKey, aadRootKey(meshID)); err != nil {
		return "", "", "", fmt.Errorf("ensure owner keys: %w", err)
	}
	err = s.pool.QueryRow(ctx, `
UPDATE mesh.mesh SET
	owner_pubkey = CASE WHEN owner_secret_key IS NULL OR owner_secret_key = '' THEN $2 ELSE owner_pubkey END,
	owner_secret_key = CASE WHEN owner_secret_key IS NULL OR owner_secret_key = '' THEN $3 ELSE owner_secret_key END,
	root_key = CASE WHEN root_key IS NULL OR root_key = '' THEN $4 ELSE root_key END
WHERE id = $1 AND archived_at IS NULL
RETURNING owner_pubkey, owner_secret_key, root_key`, meshID, pubkey, secretHex, rootKey).Scan(&pub, &sec, &root)
	if err != nil {
		return "", "", "", fmt.Errorf("ensure owner keys: %w", notFound(err))
	}
	if sec, err = s.kr.Open(sec, aadOwnerSecret(meshID)); err != nil {
		return "", "", "", fmt.Errorf("ensure owner keys: %w", err)
	}
	if root, err = s.kr.Open(root, aadRootKey(meshID)); err != nil {
		return "", "", "", fmt.Errorf("ensure owner keys: %w", err)
	}
	return pub, sec, root, nil
}

// CreateInvite stores a v1 invite (B.9.5 step 3): token, token_bytes (the
// canonical signed string of p), role and expiry from p, max_uses, and a
// fresh 8-character code, retried on a code collision up to 3 times. It
// returns the code, or "" when an invite with this exact token exists
// already: tokens are deterministic, so two invites for the same mesh and
// role signed in the same second collide; the caller re-signs with another
// expiry.
func (s *Store) CreateInvite(ctx context.Context, p *wire.InvitePayload, token string, maxUses int, createdBy string) (string, error) {
	id := meshd.NewID()
	sealedToken, err := s.kr.Seal(token, aadInviteToken(id))
	if err != nil {
		return "", fmt.Errorf("create invite: %w", err)
	}
	canonical, err := s.kr.Seal(wire.InviteCanonical(p), aadInviteCanonical(id))
	if err != nil {
		return "", fmt.Errorf("create invite: %w", err)
	}
	for attempt := 0; attempt < inviteCodeAttempts; attempt++ {
		code := wire.NewInviteCode()
		tag, err := s.pool.Exec(ctx, `
INSERT INTO mesh.invite (id, mesh_id, token, token_hash, token_bytes, code, max_uses, role, version, expires_at, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, to_timestamp($9), $10)
ON CONFLICT (token_hash) DO NOTHING`,
			id, p.MeshID, sealedToken, inviteTokenHash(token), canonical, code, maxUses, p.Role, p.ExpiresAt, nullIfEmpty(createdBy))
		switch {
		case isUniqueViolation(err):
			continue // the code is taken
		case err != nil:
			return "", fmt.Errorf("create invite: %w", err)
		case tag.RowsAffected() == 0:
			return "", nil
		}
		return code, nil
	}
	return "", fmt.Errorf("create invite: %d invite codes in a row collided", inviteCodeAttempts)
}

// InviteTokenByCode resolves a short code (GET /i/:code) to its invite
// token, whatever the invite's state: /join reports revoked, expired and
// exhausted invites precisely. meshd.ErrNotFound for an unknown code.
func (s *Store) InviteTokenByCode(ctx context.Context, code string) (string, error) {
	var id, tok string
	err := s.pool.QueryRow(ctx, "SELECT id, token FROM mesh.invite WHERE code = $1", code).Scan(&id, &tok)
	if err != nil {
		return "", fmt.Errorf("invite by code: %w", notFound(err))
	}
	if tok, err = s.kr.Open(tok, aadInviteToken(id)); err != nil {
		return "", fmt.Errorf("invite by code: %w", err)
	}
	return tok, nil
}

// Join runs the database checks of POST /join (B.9.5 step 1, after the
// signature check) in their order, in one transaction holding the invite
// row's lock, so concurrent joiners of a 1-use invite get exactly one
// success. p is the verified payload and token the invite_token that names
// the invite row; m carries Pubkey and DisplayName (MeshID and Role are
// taken from p). On success m.ID is the member id; already is true when an
// active member with m.Pubkey existed (no use consumed). A non-empty code
// is the first failing check (the Join* constants); err is only for
// database failures.
func (s *Store) Join(ctx context.Context, p *wire.InvitePayload, token string, m *meshd.Member) (already bool, code string, err error) {
	m.MeshID, m.Role = p.MeshID, p.Role
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var e error
		already, code, e = s.joinTx(ctx, tx, p, token, m)
		return e
	})
	if errors.Is(err, errMemberExists) {
		// A concurrent join of the same pubkey (through another invite)
		// won; this one consumed nothing.
		err = s.pool.QueryRow(ctx,
			"SELECT id FROM mesh.member WHERE mesh_id = $1 AND peer_pubkey = $2 AND revoked_at IS NULL",
			m.MeshID, m.Pubkey).Scan(&m.ID)
		already, code = true, ""
	}
	if err != nil {
		return false, "", fmt.Errorf("join: %w", err)
	}
	return already, code, nil
}

// joinTx is Join's transaction body; a returned code commits what was done
// so far (nothing, since every write comes after the last check).
func (s *Store) joinTx(ctx context.Context, tx pgx.Tx, p *wire.InvitePayload, token string, m *meshd.Member) (bool, string, error) {
	if code, err := checkJoinMesh(ctx, tx, p); code != "" || err != nil {
		return false, code, err
	}
	var inv struct {
		id, meshID, canonical string
		revoked, expired      bool
		used, max             int
	}
	err := tx.QueryRow(ctx, `
SELECT id, mesh_id, COALESCE(token_bytes, ''), revoked_at IS NOT NULL, expires_at < now(), used_count, max_uses
FROM mesh.invite WHERE token_hash = $1 FOR UPDATE`, inviteTokenHash(token)).
		Scan(&inv.id, &inv.meshID, &inv.canonical, &inv.revoked, &inv.expired, &inv.used, &inv.max)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, JoinInviteNotFound, nil
	case err != nil:
		return false, "", err
	}
	if inv.canonical, err = s.kr.Open(inv.canonical, aadInviteCanonical(inv.id)); err != nil {
		return false, "", err
	}
	switch {
	case inv.meshID != p.MeshID:
		return false, JoinMeshMismatch, nil
	case inv.canonical != "" && inv.canonical != wire.InviteCanonical(p):
		return false, JoinPayloadMismatch, nil
	case inv.revoked:
		return false, JoinInviteRevoked, nil
	case inv.expired:
		return false, JoinInviteExpired, nil
	}
	err = tx.QueryRow(ctx,
		"SELECT id FROM mesh.member WHERE mesh_id = $1 AND peer_pubkey = $2 AND revoked_at IS NULL",
		p.MeshID, m.Pubkey).Scan(&m.ID)
	if err == nil {
		return true, "", nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return false, "", err
	}
	var banned bool
	if err := tx.QueryRow(ctx,
		"SELECT EXISTS (SELECT 1 FROM mesh.member WHERE mesh_id = $1 AND peer_pubkey = $2 AND revoked_at IS NOT NULL)",
		p.MeshID, m.Pubkey).Scan(&banned); err != nil {
		return false, "", err
	}
	if banned {
		return false, JoinMemberBanned, nil
	}
	if inv.used >= inv.max {
		return false, JoinInviteExhausted, nil
	}
	if m.Role != "admin" && m.Role != "member" {
		return false, JoinMemberInsertFailed, nil
	}
	if _, err := tx.Exec(ctx, "UPDATE mesh.invite SET used_count = used_count + 1 WHERE id = $1", inv.id); err != nil {
		return false, "", err
	}
	m.ID = ""
	if err := insertMember(ctx, tx, m); err != nil {
		if isUniqueViolation(err) {
			return false, "", errMemberExists
		}
		return false, "", err
	}
	return false, "", nil
}

// checkJoinMesh is the mesh half of the join checks: a live mesh, with an
// owner key, equal to the payload's (hex compared case-insensitively, as
// the signature check accepts either case).
func checkJoinMesh(ctx context.Context, tx pgx.Tx, p *wire.InvitePayload) (string, error) {
	var owner string
	err := tx.QueryRow(ctx,
		"SELECT COALESCE(owner_pubkey, '') FROM mesh.mesh WHERE id = $1 AND archived_at IS NULL", p.MeshID).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return JoinMeshNotFound, nil
	case err != nil:
		return "", err
	case owner == "":
		return JoinMissingOwnerKey, nil
	case !strings.EqualFold(owner, p.OwnerPubkey):
		return JoinOwnerMismatch, nil
	}
	return "", nil
}

// MergeGrants merges patch into peer_grants of userID's own active member
// row in meshID (B.7 write path, the earliest row if several) in one
// statement: a key with a nil slice is deleted, any other (an empty slice
// blocks) replaces the key. Returns the merged grants, or meshd.ErrNotFound
// when userID has no active member row in the mesh.
func (s *Store) MergeGrants(ctx context.Context, meshID, userID string, patch meshd.Grants) (meshd.Grants, error) {
	setJSON, del, err := splitGrantsPatch(patch)
	if err != nil {
		return nil, fmt.Errorf("merge grants: %w", err)
	}
	var out meshd.Grants
	err = s.pool.QueryRow(ctx, `
UPDATE mesh.member SET peer_grants = (peer_grants || $3::jsonb) - $4::text[]
WHERE id = (
	SELECT id FROM mesh.member WHERE mesh_id = $1 AND user_id = $2 AND revoked_at IS NULL
	ORDER BY joined_at, id LIMIT 1
)
RETURNING peer_grants`, meshID, userID, setJSON, del).Scan(&out)
	if err != nil {
		return nil, fmt.Errorf("merge grants: %w", notFound(err))
	}
	return out, nil
}

// Associated data of the sealed columns (internal/seal): a sealed value only
// opens in the column and row it was written for.
func aadOwnerSecret(meshID string) string       { return "mesh.mesh.owner_secret_key:" + meshID }
func aadRootKey(meshID string) string           { return "mesh.mesh.root_key:" + meshID }
func aadInviteToken(inviteID string) string     { return "mesh.invite.token:" + inviteID }
func aadInviteCanonical(inviteID string) string { return "mesh.invite.token_bytes:" + inviteID }

// inviteTokenHash is the lookup key of an invite (migration 0015): hex
// SHA-256 of the token, which is itself stored sealed.
func inviteTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
