package store

import "errors"

// Lookups that find no row return meshd.ErrNotFound; prefix lookups that
// match more than one return meshd.ErrAmbiguous; Attach beyond a mesh's cap
// returns meshd.ErrCapacity. The sentinels below are the store's own.

// ErrConflict is returned (wrapping the PostgreSQL error) when a create
// collides with a unique key: a live mesh with the same slug, or an active
// member with the same (mesh, pubkey).
var ErrConflict = errors.New("already exists")

// ErrMigrationLock is returned by Migrate when another replica held the
// migration lock for the whole wait (B.16: 60 s).
var ErrMigrationLock = errors.New("migration lock not acquired")
