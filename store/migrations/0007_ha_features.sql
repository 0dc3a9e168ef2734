-- 0007: cluster-wide stream subscriptions and mesh clocks (B.14.2, B.14.4),
-- and the index the leader's scheduler polls (B.14.3, A.3-18).

-- One row per (stream, presence) subscription. A row counts in list_streams
-- only while its presence is live, not in its grace lease, and still held
-- by the socket that subscribed (socket_id), so a replica killed with -9
-- never inflates the counts; such rows are pruned later.
CREATE TABLE mesh.stream_subscription (
	mesh_id     text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	stream_name text NOT NULL,
	presence_id text NOT NULL REFERENCES mesh.presence (id) ON DELETE CASCADE,
	socket_id   text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (mesh_id, stream_name, presence_id)
);
CREATE INDEX stream_subscription_presence_idx ON mesh.stream_subscription (presence_id);

-- One simulation clock per mesh, owned by the leader's clock job: ticks
-- advance with one atomic UPDATE, so there is one tick per period however
-- many replicas run the job. next_tick_at is NULL while paused.
CREATE TABLE mesh.clock (
	mesh_id      text PRIMARY KEY REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	speed        double precision NOT NULL CHECK (speed >= 1 AND speed <= 100),
	paused       boolean NOT NULL DEFAULT false,
	tick         bigint NOT NULL DEFAULT 0,
	sim_time     timestamptz NOT NULL,
	started_at   timestamptz NOT NULL,
	next_tick_at timestamptz,
	updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clock_due_idx ON mesh.clock (next_tick_at) WHERE NOT paused;

-- Pending occurrences only: uncancelled one-shots not yet fired, and cron
-- rows (which stay pending until cancelled).
CREATE INDEX scheduled_message_pending_idx ON mesh.scheduled_message (deliver_at)
	WHERE NOT cancelled AND (fired_at IS NULL OR cron IS NOT NULL);
