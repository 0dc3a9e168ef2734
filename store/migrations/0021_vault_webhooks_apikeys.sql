-- 0020: vault entries, webhooks and API keys (docs/protocol.md C.5-C.7).
-- Upstream has no SQL migration for the first two (its drizzle schema only);
-- the columns follow that schema where meshd stores the same thing.

-- A member's own key/value entries (E.10): the client encrypts the value
-- (ciphertext, nonce, sealed_key); the broker seals that triple again with
-- BROKER_ENCRYPTION_KEY into `value` (internal/seal, associated data bound to
-- the row id), so the table never holds the client's strings in clear. An
-- upsert gives the row a new id (and so a new associated data).
CREATE TABLE mesh.vault_entry (
	id          text PRIMARY KEY,
	mesh_id     text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	member_id   text NOT NULL REFERENCES mesh.member (id) ON DELETE CASCADE,
	key         text NOT NULL,
	value       text NOT NULL,
	entry_type  text NOT NULL DEFAULT 'env' CHECK (entry_type IN ('env', 'file')),
	mount_path  text,
	description text,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX vault_entry_mesh_member_key_idx ON mesh.vault_entry (mesh_id, member_id, key);

-- Inbound webhooks (E.11). The secret is sealed at rest; the inbound route
-- finds a row by the SHA-256 of the secret in the URL. A name is unique
-- among active rows only, so a deleted name can be created again (unlike
-- upstream, E.16-7).
CREATE TABLE mesh.webhook (
	id          text PRIMARY KEY,
	mesh_id     text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	name        text NOT NULL,
	secret      text NOT NULL,
	secret_hash text NOT NULL,
	active      boolean NOT NULL DEFAULT true,
	created_by  text REFERENCES mesh.member (id) ON DELETE CASCADE,
	created_at  timestamptz NOT NULL DEFAULT now(),
	deleted_at  timestamptz
);
CREATE UNIQUE INDEX webhook_mesh_name_active_idx ON mesh.webhook (mesh_id, name) WHERE active;
CREATE UNIQUE INDEX webhook_secret_hash_idx ON mesh.webhook (secret_hash);

-- API keys for GET /api/v1/members (E.3): only the SHA-256 of the secret
-- is stored; the secret is shown once, at creation.
CREATE TABLE mesh.api_key (
	id                  text PRIMARY KEY,
	mesh_id             text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	label               text NOT NULL,
	secret_hash         text NOT NULL,
	secret_prefix       text NOT NULL,
	capabilities        jsonb NOT NULL DEFAULT '[]',
	topic_scopes        jsonb,
	issued_by_member_id text REFERENCES mesh.member (id) ON DELETE SET NULL,
	created_at          timestamptz NOT NULL DEFAULT now(),
	last_used_at        timestamptz,
	revoked_at          timestamptz,
	expires_at          timestamptz
);
CREATE INDEX api_key_by_mesh ON mesh.api_key (mesh_id, created_at DESC);
CREATE UNIQUE INDEX api_key_by_hash ON mesh.api_key (secret_hash);
