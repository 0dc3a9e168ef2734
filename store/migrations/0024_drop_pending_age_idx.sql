-- 0024: the claim's per-target read went through message_queue_pending_age_idx
-- (created_at of every pending row, all meshes) whenever the statistics
-- showed a small pending set: each claim then walked every pending row of
-- every mesh and filtered by target, so in a burst its cost grew with the
-- whole queue's depth (issue 10: the "unidentified reader" of this index).
-- Its other readers, the orphan and expired-claim sweeps and the queue-depth
-- gauge, read all pending rows anyway and do so through
-- message_queue_pending_target_idx, which holds the same rows; one index
-- less is also one less entry written per queued message.
DROP INDEX IF EXISTS mesh.message_queue_pending_age_idx;
