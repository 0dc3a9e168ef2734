-- 0013: the audit outbox (docs/protocol.md B.8 "Write path"). An event is
-- first committed here — a send's message_sent in the same statement as its
-- queue row — and the audit writer of any replica later moves it into the
-- hash chain under the mesh's advisory lock, so no event is lost when a
-- replica dies or the database blips. message_id links a message_sent to
-- its queue row (not hashed) so `meshd audit verify` can report acked
-- messages whose event is missing; it is NULL for other events and for
-- entries written before this migration.
CREATE TABLE mesh.audit_outbox (
	id                 bigserial PRIMARY KEY,
	mesh_id            text NOT NULL REFERENCES mesh.mesh (id) ON DELETE CASCADE,
	event_type         text NOT NULL,
	actor_member_id    text,
	actor_display_name text,
	payload            jsonb NOT NULL DEFAULT '{}',
	message_id         text,
	created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_outbox_mesh_idx ON mesh.audit_outbox (mesh_id, id);
CREATE INDEX audit_outbox_message_idx ON mesh.audit_outbox (mesh_id, message_id) WHERE message_id IS NOT NULL;

ALTER TABLE mesh.audit_log ADD COLUMN message_id text;
CREATE INDEX audit_log_message_idx ON mesh.audit_log (mesh_id, message_id) WHERE message_id IS NOT NULL;
