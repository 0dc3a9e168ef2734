package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
)

// Streams (docs/protocol.md B.14.2). Stream data itself never touches the
// database: it travels over the fanout. Postgres holds the stream names and
// one subscription row per (stream, presence) so that list_streams counts
// subscribers on every replica.

// liveSubSQL is the predicate that makes a subscription row s count: its
// presence p is live, not in its grace lease, and still held by the socket
// that subscribed. A reattached presence has a new socket and must
// subscribe again (its old interest died with the old socket).
const liveSubSQL = `p.id = s.presence_id AND p.socket_id = s.socket_id AND p.disconnected_at IS NULL AND p.lease_until IS NULL`

// CreateStream inserts stream name of meshID or returns the existing one
// (insert-or-get); createdBy is recorded only by the insert.
func (s *Store) CreateStream(ctx context.Context, meshID, name, createdBy string) (string, error) {
	// A row inserted concurrently after this statement's snapshot is
	// neither inserted nor seen; the second attempt sees it.
	for attempt := 0; ; attempt++ {
		id, err := s.createStreamOnce(ctx, meshID, name, createdBy)
		if errors.Is(err, pgx.ErrNoRows) && attempt == 0 {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("create stream: %w", err)
		}
		return id, nil
	}
}

func (s *Store) createStreamOnce(ctx context.Context, meshID, name, createdBy string) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `
WITH ins AS (
	INSERT INTO mesh.stream (id, mesh_id, name, created_by_name) VALUES ($1, $2, $3, $4)
	ON CONFLICT (mesh_id, name) DO NOTHING
	RETURNING id
)
SELECT id FROM ins
UNION ALL
SELECT id FROM mesh.stream WHERE mesh_id = $2 AND name = $3
LIMIT 1`, meshd.NewID(), meshID, name, nullIfEmpty(createdBy)).Scan(&id)
	return id, err
}

// SubscribeStream records that socketID (holding presenceID) subscribed to
// stream name of meshID. Rows of the same stream whose holder is gone are
// dropped on the way, so a busy stream keeps its table small.
func (s *Store) SubscribeStream(ctx context.Context, meshID, name, presenceID, socketID string) error {
	_, err := s.pool.Exec(ctx, `
WITH stale AS (
	DELETE FROM mesh.stream_subscription s
	WHERE s.mesh_id = $1 AND s.stream_name = $2 AND s.presence_id <> $3
		AND NOT EXISTS (SELECT 1 FROM mesh.presence p WHERE `+liveSubSQL+`)
)
INSERT INTO mesh.stream_subscription (mesh_id, stream_name, presence_id, socket_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (mesh_id, stream_name, presence_id) DO UPDATE SET socket_id = EXCLUDED.socket_id, created_at = now()`,
		meshID, name, presenceID, socketID)
	if err != nil {
		return fmt.Errorf("subscribe stream: %w", err)
	}
	return nil
}

// UnsubscribeStream deletes socketID's subscription to stream name.
func (s *Store) UnsubscribeStream(ctx context.Context, meshID, name, presenceID, socketID string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM mesh.stream_subscription
WHERE mesh_id = $1 AND stream_name = $2 AND presence_id = $3 AND socket_id = $4`, meshID, name, presenceID, socketID)
	if err != nil {
		return fmt.Errorf("unsubscribe stream: %w", err)
	}
	return nil
}

// DropSocketStreams deletes every subscription socketID made for
// presenceID (its socket closed).
func (s *Store) DropSocketStreams(ctx context.Context, presenceID, socketID string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM mesh.stream_subscription WHERE presence_id = $1 AND socket_id = $2`, presenceID, socketID)
	if err != nil {
		return fmt.Errorf("drop socket streams: %w", err)
	}
	return nil
}

// ListStreams returns the streams of meshID, oldest first, with the number
// of live subscribers on every replica.
func (s *Store) ListStreams(ctx context.Context, meshID string) ([]meshd.Stream, error) {
	rows, err := s.pool.Query(ctx, `
SELECT st.id, st.name, COALESCE(st.created_by_name, ''), st.created_at,
	(SELECT count(*) FROM mesh.stream_subscription s JOIN mesh.presence p ON `+liveSubSQL+`
	 WHERE s.mesh_id = st.mesh_id AND s.stream_name = st.name)
FROM mesh.stream st WHERE st.mesh_id = $1 ORDER BY st.created_at, st.id`, meshID)
	if err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (meshd.Stream, error) {
		var st meshd.Stream
		err := r.Scan(&st.ID, &st.Name, &st.CreatedBy, &st.CreatedAt, &st.Subscribers)
		return st, err
	})
	if err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	return out, nil
}

// PruneStreamSubscriptions deletes subscription rows whose holder is gone
// (socket closed without cleanup, e.g. a replica killed with -9).
func (s *Store) PruneStreamSubscriptions(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mesh.stream_subscription s
WHERE NOT EXISTS (SELECT 1 FROM mesh.presence p WHERE `+liveSubSQL+`)`)
	if err != nil {
		return 0, fmt.Errorf("prune stream subscriptions: %w", err)
	}
	return tag.RowsAffected(), nil
}
