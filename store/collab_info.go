package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/meshd/meshd/collab"
)

// MeshStats aggregates mesh_info (E.6) in one round trip.
func (s *Store) MeshStats(ctx context.Context, meshID string) (collab.MeshStats, error) {
	st := collab.MeshStats{Tasks: map[string]int{"open": 0, "claimed": 0, "done": 0}}
	var tasks []byte
	err := s.pool.QueryRow(ctx, `
SELECT
	(SELECT count(*) FROM mesh.presence WHERE mesh_id = $1 AND disconnected_at IS NULL),
	COALESCE((SELECT array_agg(g ORDER BY first) FROM (
		SELECT '@' || (e->>'name') AS g, min(p.connected_at) AS first
		FROM mesh.presence p, jsonb_array_elements(p.groups) e
		WHERE p.mesh_id = $1 AND p.disconnected_at IS NULL AND e->>'name' <> ''
		GROUP BY 1) x), '{}'),
	COALESCE((SELECT array_agg(key ORDER BY key) FROM mesh.state WHERE mesh_id = $1), '{}'),
	(SELECT count(*) FROM mesh.memory WHERE mesh_id = $1 AND forgotten_at IS NULL),
	COALESCE((SELECT jsonb_object_agg(status, n) FROM (
		SELECT status, count(*) AS n FROM mesh.task WHERE mesh_id = $1 GROUP BY status) t), '{}'),
	COALESCE((SELECT array_agg(name ORDER BY created_at, name) FROM mesh.stream WHERE mesh_id = $1), '{}')`,
		meshID).Scan(&st.Peers, &st.Groups, &st.StateKeys, &st.MemoryCount, &tasks, &st.Streams)
	if err != nil {
		return st, fmt.Errorf("mesh stats: %w", err)
	}
	counts := map[string]int{}
	if err := json.Unmarshal(tasks, &counts); err != nil {
		return st, fmt.Errorf("mesh stats: tasks: %w", err)
	}
	for k, v := range counts {
		st.Tasks[k] = v
	}
	return st, nil
}
