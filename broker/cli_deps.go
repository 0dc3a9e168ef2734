package broker

import (
	"context"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Enrollment is what the CLI and enrollment HTTP routes (cli.go) ask of the
// database (docs/protocol.md B.7, B.9.3-B.9.5).
type Enrollment interface {
	CLITokens
	MeshAdmin
	Invites
	GrantWriter
}

// CLITokens validates and revokes CLI bearer tokens (B.9.3, A.3-15).
type CLITokens interface {
	// LookupCLIToken returns the user and session of a token that is
	// neither revoked nor expired; meshd.ErrNotFound otherwise.
	LookupCLIToken(ctx context.Context, token string) (userID, sessionID string, err error)
	// RevokeCLIToken revokes token's session; found reports whether the
	// token names one.
	RevokeCLIToken(ctx context.Context, token string) (found bool, err error)
}

// MeshAdmin creates, finds, lists and archives meshes for their owners.
type MeshAdmin interface {
	// CreateOwnedMesh inserts mesh m (owner keys and root key included) and
	// the owner's member row in one transaction. m.Slug is the base slug;
	// the first free of base, base-2 … base-100 is used and written back.
	// ok is false, with nothing written, when all are taken.
	CreateOwnedMesh(ctx context.Context, m *meshd.Mesh, ownerSecretHex, rootKey string, owner *meshd.Member) (ok bool, err error)
	// MeshBySlug returns the live mesh with slug; meshd.ErrNotFound if none.
	MeshBySlug(ctx context.Context, slug string) (meshd.Mesh, error)
	// ArchiveMesh sets archived_at on a live mesh; meshd.ErrNotFound if none.
	ArchiveMesh(ctx context.Context, meshID string) error
	// UserMeshes calls fn for each live mesh userID owns or is an active
	// member of, with the user's role, when they joined, the number of
	// active members and of live presences.
	UserMeshes(ctx context.Context, userID string, fn func(ms meshd.Mesh, role string, joinedAt time.Time, members, active int)) error
}

// Invites issues, resolves and redeems v1 signed invites (B.9.5).
type Invites interface {
	// EnsureOwnerKeys returns the mesh's owner pubkey, owner secret (hex)
	// and root key, storing the given ones first where they are missing.
	EnsureOwnerKeys(ctx context.Context, meshID, pubkey, secretHex, rootKey string) (pub, secret, root string, err error)
	// CreateInvite stores the invite signed in p under token with maxUses
	// and returns its new short code, or "" when the token exists already
	// (same mesh, role and expiry second): re-sign with another expiry.
	CreateInvite(ctx context.Context, p *wire.InvitePayload, token string, maxUses int, createdBy string) (code string, err error)
	// InviteTokenByCode resolves a short code; meshd.ErrNotFound if unknown.
	InviteTokenByCode(ctx context.Context, code string) (token string, err error)
	// Join runs the database checks of POST /join after the signature
	// check, in B.9.5's order, atomically: code is "" on success (m.ID set,
	// already true when the pubkey was a member and no use was consumed),
	// else the B.9.5 error code. err is only for database failures.
	Join(ctx context.Context, p *wire.InvitePayload, token string, m *meshd.Member) (already bool, code string, err error)
}

// GrantWriter is the grants write path (B.7).
type GrantWriter interface {
	// MergeGrants merges patch into userID's own member row of meshID (a
	// nil slice deletes the key) and returns the result; meshd.ErrNotFound
	// when the user has no active member row there.
	MergeGrants(ctx context.Context, meshID, userID string, patch meshd.Grants) (meshd.Grants, error)
}
