package api

import (
	"context"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// The control plane knows nothing about SQL or NATS subjects: it declares the
// small interfaces it needs here and cmd/meshd wires store.Store and
// fanout.Bus in (checked at compile time there).

// Store is everything the control plane asks of the database (docs/protocol.md
// B.6.4, B.7, B.9.3-B.9.5).
type Store interface {
	CLITokens
	MeshOwner
	MeshLookup
	InviteIssuer
	InviteRedeemer
	GrantWriter
	Hooks
	LegacyAuthLog
	Webhooks
	APIKeys
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

// MeshOwner creates and archives meshes for their owners.
type MeshOwner interface {
	// CreateOwnedMesh inserts mesh m (owner keys and root key included) and
	// the owner's member row in one transaction. m.Slug is the base slug;
	// the first free of base, base-2 … base-100 is used and written back.
	// ok is false, with nothing written, when all are taken.
	CreateOwnedMesh(ctx context.Context, m *meshd.Mesh, ownerSecretHex, rootKey string, owner *meshd.Member) (ok bool, err error)
	// ArchiveMesh sets archived_at on a live mesh; meshd.ErrNotFound if none.
	ArchiveMesh(ctx context.Context, meshID string) error
	// RenameMesh sets a live mesh's name (not its slug); meshd.ErrNotFound
	// if none.
	RenameMesh(ctx context.Context, meshID, name string) error
}

// MeshLookup finds meshes by slug and lists a user's meshes.
type MeshLookup interface {
	// MeshBySlug returns the live mesh with slug; meshd.ErrNotFound if none.
	MeshBySlug(ctx context.Context, slug string) (meshd.Mesh, error)
	// UserMeshes calls fn for each live mesh userID owns or is an active
	// member of, with the user's role, when they joined, the number of
	// active members and of live presences.
	UserMeshes(ctx context.Context, userID string, fn func(ms meshd.Mesh, role string, joinedAt time.Time, members, active int)) error
}

// InviteIssuer issues v1 signed invites (B.9.5 step 3).
type InviteIssuer interface {
	// EnsureOwnerKeys returns the mesh's owner pubkey, owner secret (hex)
	// and root key, storing the given ones first where they are missing.
	EnsureOwnerKeys(ctx context.Context, meshID, pubkey, secretHex, rootKey string) (pub, secret, root string, err error)
	// CreateInvite stores the invite signed in p under token with maxUses
	// and returns its new short code, or "" when the token exists already
	// (same mesh, role and expiry second): re-sign with another expiry.
	CreateInvite(ctx context.Context, p *wire.InvitePayload, token string, maxUses int, createdBy string) (code string, err error)
}

// InviteRedeemer resolves short codes and redeems invites (B.9.5 step 1).
type InviteRedeemer interface {
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

// Hooks is what POST /hook/set-status (hook.go) asks of the database.
type Hooks interface {
	// HookPresences returns the live presences (grace leases included) a
	// hook for (pid, cwd) addresses, in every mesh, newest first (B.6.4,
	// A.3-14): with a pid, every live presence with that (pid, cwd) and
	// nothing else; without one (pid 0), the newest live presence with that
	// cwd and the others sharing its pid. No match is an empty slice.
	HookPresences(ctx context.Context, pid int, cwd string) ([]meshd.Presence, error)
	// AddPendingStatus stores a hook status for a presence that does not
	// exist yet (B.6.5); Attach applies it.
	AddPendingStatus(ctx context.Context, pid int, cwd string, status meshd.Status) error
	// WriteStatus applies the B.6.2 write rules to one presence; a dnd row
	// is only changed by a manual write. changed reports whether status or
	// source changed; meshd.ErrNotFound when the presence does not exist.
	WriteStatus(ctx context.Context, presenceID string, status meshd.Status,
		source meshd.StatusSource, freshWindow time.Duration) (changed bool, err error)
}

// Publisher wakes sockets on whichever replica holds them: the hook
// publishes an empty message on meshd.PeerTopic (the fan-out's Publish).
type Publisher interface {
	Publish(ctx context.Context, topic string, data []byte) error
}
