-- 0027: the recipient lookup of the send path (store.DirectRecipients)
-- resolves a session-pubkey target through the live presences. With only
-- presence_session_pubkey_idx (every row, live or not) its generic plan
-- took the mesh's live rows and filtered them by key: ~90 buffer reads per
-- send in a mesh of 100 (issue 10, docs/benchmarks.md).
--
-- The predicate names session_pubkey as well: only a statement with a
-- condition on session_pubkey can use this index. A generic plan made
-- while the table is one page long costs every usable index the same, and
-- a statement counting a mesh's live rows (mesh.attach_presence) picked an
-- index on live rows that does not lead with mesh_id, then kept that plan
-- for the rest of the run: 970 buffer reads per hello instead of ~50.
CREATE INDEX presence_session_live_idx ON mesh.presence (session_pubkey, mesh_id)
	WHERE disconnected_at IS NULL AND session_pubkey IS NOT NULL;
