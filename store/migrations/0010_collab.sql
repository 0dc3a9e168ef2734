-- 0010: collaboration verbs (docs/protocol-collab.md): memory, tasks,
-- contexts, skills and topics. Column names follow upstream's tables so a
-- database can be compared side by side; timestamps are timestamptz (A.3-11)
-- and enums are CHECK constraints.

-- Full-text document of a memory: its content and its tags, English
-- stemming (upstream searches content only; tags are searchable here).
-- array_to_string is only STABLE for anyarray; on text[] it is immutable in
-- practice, which a generated column requires.
CREATE FUNCTION mesh.memory_document(content text, tags text[]) RETURNS tsvector
	LANGUAGE sql IMMUTABLE PARALLEL SAFE
	AS $$ SELECT setweight(to_tsvector('english', content), 'A')
		|| setweight(to_tsvector('english', COALESCE(array_to_string(tags, ' '), '')), 'B') $$;

CREATE TABLE mesh.memory (
	id                 text PRIMARY KEY,
	mesh_id            text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	content            text NOT NULL,
	tags               text[] NOT NULL DEFAULT '{}',
	remembered_by      text REFERENCES mesh.member (id) ON DELETE SET NULL,
	remembered_by_name text,
	remembered_at      timestamptz NOT NULL DEFAULT now(),
	forgotten_at       timestamptz,
	search_vector      tsvector GENERATED ALWAYS AS (mesh.memory_document(content, tags)) STORED
);
CREATE INDEX memory_search_idx ON mesh.memory USING gin (search_vector);
CREATE INDEX memory_mesh_live_idx ON mesh.memory (mesh_id) WHERE forgotten_at IS NULL;

CREATE TABLE mesh.task (
	id                  text PRIMARY KEY,
	mesh_id             text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	title               text NOT NULL,
	assignee            text,
	claimed_by_name     text,
	claimed_by_presence text,
	claimed_by_member   text REFERENCES mesh.member (id) ON DELETE SET NULL,
	priority            text NOT NULL DEFAULT 'normal',
	status              text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'claimed', 'done')),
	tags                text[] NOT NULL DEFAULT '{}',
	result              text,
	created_by_name     text,
	created_by_member   text REFERENCES mesh.member (id) ON DELETE SET NULL,
	created_at          timestamptz NOT NULL DEFAULT now(),
	claimed_at          timestamptz,
	completed_at        timestamptz
);
CREATE INDEX task_mesh_created_idx ON mesh.task (mesh_id, created_at DESC);

-- One context per member per mesh (E.7).
CREATE TABLE mesh.context (
	id           text PRIMARY KEY,
	mesh_id      text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	member_id    text NOT NULL REFERENCES mesh.member (id) ON DELETE CASCADE,
	presence_id  text,
	peer_name    text,
	summary      text NOT NULL,
	files_read   text[] NOT NULL DEFAULT '{}',
	key_findings text[] NOT NULL DEFAULT '{}',
	tags         text[] NOT NULL DEFAULT '{}',
	updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX context_mesh_member_idx ON mesh.context (mesh_id, member_id);

CREATE TABLE mesh.skill (
	id               text PRIMARY KEY,
	mesh_id          text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	name             text NOT NULL,
	description      text NOT NULL,
	instructions     text NOT NULL,
	tags             text[] NOT NULL DEFAULT '{}',
	author_member_id text REFERENCES mesh.member (id) ON DELETE SET NULL,
	author_name      text,
	manifest         jsonb,
	created_at       timestamptz NOT NULL DEFAULT now(),
	updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX skill_mesh_name_idx ON mesh.skill (mesh_id, name);

-- Topics (E.2.1). A name is unique per mesh, archived rows included.
CREATE TABLE mesh.topic (
	id                   text PRIMARY KEY,
	mesh_id              text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	name                 text NOT NULL,
	description          text,
	visibility           text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'private', 'dm')),
	created_by_member_id text REFERENCES mesh.member (id) ON DELETE SET NULL,
	encrypted_key_pubkey text,
	created_at           timestamptz NOT NULL DEFAULT now(),
	archived_at          timestamptz
);
CREATE UNIQUE INDEX topic_mesh_name_unique ON mesh.topic (mesh_id, name);

CREATE TABLE mesh.topic_member (
	topic_id     text NOT NULL REFERENCES mesh.topic (id) ON DELETE CASCADE,
	member_id    text NOT NULL REFERENCES mesh.member (id) ON DELETE CASCADE,
	role         text NOT NULL DEFAULT 'member' CHECK (role IN ('lead', 'member', 'observer')),
	joined_at    timestamptz NOT NULL DEFAULT now(),
	last_read_at timestamptz,
	PRIMARY KEY (topic_id, member_id)
);
CREATE INDEX topic_member_by_member ON mesh.topic_member (member_id);

CREATE TABLE mesh.topic_message (
	id                    text PRIMARY KEY,
	topic_id              text NOT NULL REFERENCES mesh.topic (id) ON DELETE CASCADE,
	sender_member_id      text NOT NULL REFERENCES mesh.member (id) ON DELETE CASCADE,
	sender_session_pubkey text,
	nonce                 text NOT NULL,
	ciphertext            text NOT NULL,
	body_version          integer NOT NULL DEFAULT 1,
	reply_to_id           text REFERENCES mesh.topic_message (id) ON DELETE SET NULL,
	created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX topic_message_by_topic_time ON mesh.topic_message (topic_id, created_at, id);
CREATE INDEX topic_message_by_reply_to ON mesh.topic_message (reply_to_id);

-- The topic key sealed for one member (E.2.6): encrypted_key is base64 of
-- sealer X25519 public (32) || crypto_box(topicKey) (48); nonce is base64.
CREATE TABLE mesh.topic_member_key (
	id            text PRIMARY KEY,
	topic_id      text NOT NULL REFERENCES mesh.topic (id) ON DELETE CASCADE,
	member_id     text NOT NULL REFERENCES mesh.member (id) ON DELETE CASCADE,
	encrypted_key text NOT NULL,
	nonce         text NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now(),
	rotated_at    timestamptz
);
CREATE UNIQUE INDEX topic_member_key_unique ON mesh.topic_member_key (topic_id, member_id);
CREATE INDEX topic_member_key_by_member ON mesh.topic_member_key (member_id);

