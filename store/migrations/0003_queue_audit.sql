-- 0003: the durable message queue (B.5) and the audit chain (B.8).

CREATE TABLE mesh.message_queue (
	id                    text PRIMARY KEY,
	mesh_id               text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	sender_member_id      text NOT NULL REFERENCES mesh.member (id) ON DELETE CASCADE,
	sender_session_pubkey text,
	target_spec           text NOT NULL,
	priority              text NOT NULL DEFAULT 'next' CHECK (priority IN ('now', 'next', 'low')),
	nonce                 text NOT NULL,
	ciphertext            text NOT NULL,
	created_at            timestamptz NOT NULL DEFAULT now(),
	delivered_at          timestamptz,
	expires_at            timestamptz,
	client_message_id     text,
	request_fingerprint   text,
	claimed_at            timestamptz,
	claim_id              text,
	claim_expires_at      timestamptz
);
-- The claim scans a mesh's undelivered rows in FIFO order.
CREATE INDEX message_queue_pending_idx ON mesh.message_queue (mesh_id, created_at, id) WHERE delivered_at IS NULL;
-- Orphan sweep and queue age gauge.
CREATE INDEX message_queue_pending_age_idx ON mesh.message_queue (created_at) WHERE delivered_at IS NULL;
-- Expired-claim sweep.
CREATE INDEX message_queue_claim_expiry_idx ON mesh.message_queue (claim_expires_at) WHERE delivered_at IS NULL AND claim_expires_at IS NOT NULL;
-- message_status prefix lookups (LIKE 'prefix%') within a mesh (B.4.4).
CREATE INDEX message_queue_mesh_id_prefix_idx ON mesh.message_queue (mesh_id, id text_pattern_ops);
-- client_ack by client_message_id.
CREATE INDEX message_queue_client_id_idx ON mesh.message_queue (mesh_id, client_message_id) WHERE delivered_at IS NULL AND client_message_id IS NOT NULL;

-- Exactly B.8, with created_at as timestamptz (A.3-11).
CREATE TABLE mesh.audit_log (
	id                 integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	mesh_id            text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	event_type         text NOT NULL,
	actor_member_id    text,
	actor_display_name text,
	payload            jsonb NOT NULL DEFAULT '{}',
	prev_hash          text NOT NULL,
	hash               text NOT NULL,
	created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_mesh_id_idx ON mesh.audit_log (mesh_id);
CREATE INDEX audit_log_created_at_idx ON mesh.audit_log (created_at);
