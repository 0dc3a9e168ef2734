-- 0005: claim by target. The claim scans a mesh's undelivered rows in FIFO
-- order (message_queue_pending_idx); when a mesh holds many rows for other
-- targets (orphans wait 7 days for offline members) the planner can instead
-- read only the claimer's targets.
CREATE INDEX message_queue_pending_target_idx ON mesh.message_queue (mesh_id, target_spec, created_at, id) WHERE delivered_at IS NULL;
