-- 0020: claims and their release update claimed_at, claim_id and
-- claim_expires_at. With an index on claim_id (0008) or claim_expires_at
-- (0003) no such update could be HOT: every claim wrote a new entry into
-- every index of the queue (issue 10: 0 HOT updates of ~200,000 in a
-- 100 x 1,000 burst). The release of a closed socket's claims now reads the
-- socket's targets through message_queue_pending_target_idx, and the expired
-- claim sweep the pending rows through message_queue_pending_age_idx, so
-- neither index has a reader left. Pages keep room for the new row versions
-- (fillfactor, for pages written from now on). The delivered mark still
-- changes delivered_at, which the partial indexes' predicates read: that
-- update cannot be HOT (docs/benchmarks.md).
DROP INDEX IF EXISTS mesh.message_queue_claim_idx;
DROP INDEX IF EXISTS mesh.message_queue_claim_expiry_idx;
ALTER TABLE mesh.message_queue SET (fillfactor = 75);
