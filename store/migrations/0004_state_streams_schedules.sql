-- 0004: shared state, streams and scheduled messages (B.14.1-14.3).

CREATE TABLE mesh.state (
	id                  text PRIMARY KEY,
	mesh_id             text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	key                 text NOT NULL,
	value               jsonb NOT NULL,
	updated_by_presence text,
	updated_by_name     text,
	updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX state_mesh_key_idx ON mesh.state (mesh_id, key);

CREATE TABLE mesh.stream (
	id              text PRIMARY KEY,
	mesh_id         text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	name            text NOT NULL,
	created_by_name text,
	created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX stream_mesh_name_idx ON mesh.stream (mesh_id, name);

CREATE TABLE mesh.scheduled_message (
	id          text PRIMARY KEY,
	mesh_id     text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	presence_id text,
	member_id   text REFERENCES mesh.member (id) ON DELETE CASCADE,
	"to"        text NOT NULL,
	message     text NOT NULL,
	deliver_at  timestamptz NOT NULL,
	cron        text,
	subtype     text,
	fired_count integer NOT NULL DEFAULT 0,
	cancelled   boolean NOT NULL DEFAULT false,
	fired_at    timestamptz,
	created_at  timestamptz NOT NULL DEFAULT now()
);
-- The leader's scheduler picks due, uncancelled rows (A.3-18).
CREATE INDEX scheduled_message_due_idx ON mesh.scheduled_message (deliver_at) WHERE NOT cancelled;
CREATE INDEX scheduled_message_mesh_idx ON mesh.scheduled_message (mesh_id);
