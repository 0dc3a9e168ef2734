-- 0012: the claim reads each of the claimer's targets through
-- message_queue_pending_target_idx (mesh, target, created_at, id), and the
-- re-drain's pending-target scan leads with mesh_id there too, so the
-- mesh-wide FIFO index of 0003 has no reader left: it only cost an index
-- write on every insert and delivered mark (issue 10).
DROP INDEX IF EXISTS mesh.message_queue_pending_idx;
