-- 0008: releasing a closed or replaced socket's claims (claim_id = socket
-- id) must not scan the whole queue.
CREATE INDEX message_queue_claim_idx ON mesh.message_queue (claim_id)
	WHERE delivered_at IS NULL AND claim_id IS NOT NULL;
