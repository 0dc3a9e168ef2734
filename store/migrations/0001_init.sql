-- 0001: meshes, members, invites, CLI sessions and replica nodes.
-- All timestamps are timestamptz (docs/protocol.md A.3-11). Files are applied by
-- store.Migrate, each in its own transaction: no BEGIN/COMMIT here.

CREATE SCHEMA IF NOT EXISTS mesh;

CREATE TABLE mesh.mesh (
	id               text PRIMARY KEY,
	slug             text,
	name             text NOT NULL DEFAULT '',
	owner_user_id    text,
	owner_pubkey     text,
	owner_secret_key text,
	root_key         text,
	self_editable    jsonb,
	archived_at      timestamptz,
	created_at       timestamptz NOT NULL DEFAULT now()
);
-- A slug names one live mesh; archived meshes free theirs (B.9.5 step 2).
CREATE UNIQUE INDEX mesh_slug_active_idx ON mesh.mesh (slug) WHERE archived_at IS NULL;

CREATE TABLE mesh.member (
	id             text PRIMARY KEY,
	mesh_id        text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	user_id        text,
	peer_pubkey    text NOT NULL,
	display_name   text NOT NULL DEFAULT '',
	role           text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
	role_tag       text,
	default_groups jsonb NOT NULL DEFAULT '[]',
	message_mode   text,
	peer_grants    jsonb NOT NULL DEFAULT '{}',
	revoked_at     timestamptz,
	joined_at      timestamptz NOT NULL DEFAULT now()
);
-- Hello looks members up by (mesh, pubkey), revoked rows included (B.2 4a).
CREATE INDEX member_mesh_pubkey_idx ON mesh.member (mesh_id, peer_pubkey);
-- At most one active member per (mesh, pubkey): concurrent joins with the
-- same key cannot create two (B.9.5 "alreadyMember").
CREATE UNIQUE INDEX member_mesh_pubkey_active_idx ON mesh.member (mesh_id, peer_pubkey) WHERE revoked_at IS NULL;
CREATE INDEX member_peer_grants_gin_idx ON mesh.member USING gin (peer_grants);

CREATE TABLE mesh.invite (
	id                text PRIMARY KEY,
	mesh_id           text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	token             text NOT NULL UNIQUE,
	token_bytes       text,
	code              text UNIQUE,
	max_uses          integer NOT NULL DEFAULT 1,
	used_count        integer NOT NULL DEFAULT 0,
	role              text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
	preset            jsonb,
	version           integer NOT NULL DEFAULT 1,
	capability_v2     jsonb,
	claimed_by_pubkey text,
	expires_at        timestamptz NOT NULL,
	revoked_at        timestamptz,
	created_by        text,
	created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX invite_mesh_idx ON mesh.invite (mesh_id);

-- CLI bearer tokens: only the lowercase hex SHA-256 of the token is stored
-- (B.9.3, A.3-15).
CREATE TABLE mesh.cli_session (
	id           text PRIMARY KEY,
	user_id      text NOT NULL,
	token_hash   text NOT NULL,
	hostname     text,
	platform     text,
	arch         text,
	last_seen_at timestamptz,
	created_at   timestamptz NOT NULL DEFAULT now(),
	expires_at   timestamptz,
	revoked_at   timestamptz
);
CREATE UNIQUE INDEX cli_session_token_hash_idx ON mesh.cli_session (token_hash);
CREATE INDEX cli_session_user_idx ON mesh.cli_session (user_id);

-- One row per replica; heartbeat_at lets the others tell a dead replica's
-- presences from live ones (A.3-17).
CREATE TABLE mesh.node (
	id           text PRIMARY KEY,
	addr         text NOT NULL DEFAULT '',
	started_at   timestamptz NOT NULL DEFAULT now(),
	heartbeat_at timestamptz NOT NULL DEFAULT now(),
	draining     boolean NOT NULL DEFAULT false
);
