-- 0025: every message_sent event writes one audit_log row, and each index
-- of the table one more entry. Two of them had no reader: every query of
-- the chain is by mesh in id order (the tail, audit_query, verify), which
-- audit_log_mesh_tail_idx (mesh_id, id DESC) serves, and nothing reads the
-- chain by created_at (issue 10: fewer writes per message).
DROP INDEX IF EXISTS mesh.audit_log_mesh_id_idx;
DROP INDEX IF EXISTS mesh.audit_log_created_at_idx;
