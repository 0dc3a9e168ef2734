-- 0009: the audit write re-reads the chain tail (ORDER BY id DESC LIMIT 1)
-- per mesh inside its locked transaction; this index makes that an index
-- probe whatever the planner's statistics say.
CREATE INDEX audit_log_mesh_tail_idx ON mesh.audit_log (mesh_id, id DESC);
