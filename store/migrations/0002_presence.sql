-- 0002: presence, pending hook status and restorable peer state (B.6).

-- One row per connection (B.6.1), owned by the node holding its socket.
-- Rows are never deleted, only disconnected. lease_until is set while the
-- socket is gone and the presence waits for a reattach on any replica.
CREATE TABLE mesh.presence (
	id                text PRIMARY KEY,
	mesh_id           text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	member_id         text NOT NULL REFERENCES mesh.member (id) ON DELETE CASCADE,
	session_id        text NOT NULL,
	session_pubkey    text,
	display_name      text,
	pid               integer NOT NULL,
	cwd               text NOT NULL,
	status            text NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'working', 'dnd')),
	status_source     text NOT NULL DEFAULT 'jsonl' CHECK (status_source IN ('hook', 'manual', 'jsonl')),
	status_updated_at timestamptz NOT NULL DEFAULT now(),
	summary           text,
	groups            jsonb NOT NULL DEFAULT '[]',
	role              text NOT NULL DEFAULT 'session' CHECK (role IN ('control-plane', 'session', 'service')),
	node_id           text NOT NULL,
	socket_id         text NOT NULL,
	lease_until       timestamptz,
	hostname          text,
	peer_type         text,
	channel           text,
	model             text,
	visible           boolean NOT NULL DEFAULT true,
	profile           jsonb NOT NULL DEFAULT '{}',
	connected_at      timestamptz NOT NULL DEFAULT now(),
	last_ping_at      timestamptz NOT NULL DEFAULT now(),
	disconnected_at   timestamptz
);
CREATE INDEX presence_mesh_live_idx ON mesh.presence (mesh_id) WHERE disconnected_at IS NULL;
CREATE INDEX presence_session_pubkey_idx ON mesh.presence (session_pubkey);
CREATE INDEX presence_pid_cwd_idx ON mesh.presence (pid, cwd);
CREATE INDEX presence_node_live_idx ON mesh.presence (node_id) WHERE disconnected_at IS NULL;
CREATE INDEX presence_lease_idx ON mesh.presence (lease_until) WHERE disconnected_at IS NULL AND lease_until IS NOT NULL;

-- Hook statuses that arrived before their presence (B.6.5). No FK.
CREATE TABLE mesh.pending_status (
	id            text PRIMARY KEY,
	pid           integer NOT NULL,
	cwd           text NOT NULL,
	status        text NOT NULL CHECK (status IN ('idle', 'working', 'dnd')),
	status_source text NOT NULL DEFAULT 'hook',
	created_at    timestamptz NOT NULL DEFAULT now(),
	applied_at    timestamptz
);
CREATE INDEX pending_status_pid_cwd_idx ON mesh.pending_status (pid, cwd, created_at);

CREATE TABLE mesh.peer_state (
	id                text PRIMARY KEY,
	mesh_id           text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	member_id         text NOT NULL REFERENCES mesh.member (id) ON DELETE CASCADE,
	groups            jsonb NOT NULL DEFAULT '[]',
	profile           jsonb NOT NULL DEFAULT '{}',
	visible           boolean NOT NULL DEFAULT true,
	last_summary      text,
	last_display_name text,
	cumulative_stats  jsonb NOT NULL DEFAULT '{"messagesIn":0,"messagesOut":0,"toolCalls":0,"errors":0}',
	last_seen_at      timestamptz,
	created_at        timestamptz NOT NULL DEFAULT now(),
	updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX peer_state_mesh_member_idx ON mesh.peer_state (mesh_id, member_id);
