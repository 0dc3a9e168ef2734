-- 0026: PL/pgSQL prepares each statement of attach_presence once per
-- session, but two of them (the slot pick and the presence lookup) were
-- planned afresh on every hello: 1.2 ms of planning per hello, more than
-- they take to run (issue 10, pg_stat_statements with track_planning).
-- Generic plans are made once per connection; a generic plan made while
-- the presence tables are still empty must not settle on a sequential
-- scan, so the function's statements also run with enable_seqscan off
-- (they all read by key).
ALTER FUNCTION mesh.attach_presence(text, text, text, text, text, text, integer, text, jsonb, text, text,
	text, text, text, text, text, jsonb, boolean, boolean, integer, integer, boolean, float8)
	SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION mesh.attach_presence(text, text, text, text, text, text, integer, text, jsonb, text, text,
	text, text, text, text, text, jsonb, boolean, boolean, integer, integer, boolean, float8)
	SET enable_seqscan = off;
