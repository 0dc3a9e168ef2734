package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
)

// MergeMemberGrants merges patch into peer_grants of the active member
// memberID of meshID (the WS set_grants path, B.7): a key with a nil slice
// is deleted, any other (an empty slice blocks) replaces the key. The merge
// is written only when the result has at most max entries; otherwise
// nothing changes and ok is false. Returns the grants as stored after the
// statement, or meshd.ErrNotFound when the member is not active in the mesh.
func (s *Store) MergeMemberGrants(ctx context.Context, meshID, memberID string, patch meshd.Grants, max int) (out meshd.Grants, ok bool, err error) {
	set, del, err := splitGrantsPatch(patch)
	if err != nil {
		return nil, false, fmt.Errorf("merge member grants: %w", err)
	}
	// One statement: the count check and the write see the same row
	// version, so concurrent merges cannot pass the cap together.
	err = s.pool.QueryRow(ctx, `
WITH cur AS (
	SELECT id, (peer_grants || $3::jsonb) - $4::text[] AS merged
	FROM mesh.member WHERE id = $2 AND mesh_id = $1 AND revoked_at IS NULL
	FOR UPDATE
), upd AS (
	UPDATE mesh.member m SET peer_grants = cur.merged FROM cur
	WHERE m.id = cur.id AND (SELECT count(*) FROM jsonb_object_keys(cur.merged)) <= $5
	RETURNING m.peer_grants
)
SELECT coalesce((SELECT peer_grants FROM upd), (SELECT m.peer_grants FROM mesh.member m JOIN cur ON cur.id = m.id)),
	EXISTS (SELECT 1 FROM upd)`, meshID, memberID, set, del, max).Scan(&out, &ok)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, meshd.ErrNotFound
	case err != nil:
		return nil, false, fmt.Errorf("merge member grants: %w", err)
	case out == nil:
		return nil, false, meshd.ErrNotFound
	}
	return out, ok, nil
}

// splitGrantsPatch separates a grants patch into the entries to set (as a
// JSON object) and the keys to delete (nil slices).
func splitGrantsPatch(patch meshd.Grants) (string, []string, error) {
	set := meshd.Grants{}
	del := []string{}
	for k, caps := range patch {
		if caps == nil {
			del = append(del, k)
		} else {
			set[k] = caps
		}
	}
	b, err := json.Marshal(set)
	return string(b), del, err
}
