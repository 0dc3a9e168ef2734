package broker

import (
	"context"
	"time"

	"github.com/meshd/meshd"
)

// Hooks is what POST /hook/set-status (hook.go) asks of the database.
type Hooks interface {
	// HookPresences returns the live presences (grace leases included) a
	// hook for (pid, cwd) addresses, in every mesh, newest first (B.6.4,
	// A.3-14): every live presence with that (pid, cwd); else the newest
	// live presence with that cwd and the others sharing its pid. pid 0
	// means not given. No match is an empty slice.
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
