package store

import (
	"context"
	"fmt"
	"time"

	"github.com/meshd/meshd"
)

// DeleteCanaryRows deletes the delivery canary's rows (meshd.SystemMeshID)
// with the given ids, and any canary row older than olderThan (a round that
// stalled, or a replica that died mid-round: node ids change on restart, so
// no owner would ever claim them). Returns how many rows it deleted. The
// system mesh holds only canary rows, a handful at any time.
func (s *Store) DeleteCanaryRows(ctx context.Context, ids []string, olderThan time.Duration) (int64, error) {
	if ids == nil {
		ids = []string{}
	}
	tag, err := s.lease.Exec(ctx, `
DELETE FROM mesh.message_queue
WHERE mesh_id = $1 AND (id = ANY($2::text[]) OR created_at < now() - make_interval(secs => $3::float8))`,
		meshd.SystemMeshID, ids, secs(olderThan))
	if err != nil {
		return 0, fmt.Errorf("delete canary rows: %w", err)
	}
	return tag.RowsAffected(), nil
}
