-- 0019: what a queued message's push carries beyond the body
-- (docs/protocol.md B.4.3, C.2.4): the send's replyToId, and for the rows of
-- a #topic post the topic's name and the body version. All three are NULL
-- on every other row; adding nullable columns without a default rewrites
-- nothing.
ALTER TABLE mesh.message_queue
	ADD COLUMN reply_to_id text,
	ADD COLUMN topic text,
	ADD COLUMN body_version smallint;
