-- 0018: who still authenticates through the legacy body user_id shim
-- (BROKER_LEGACY_AUTH=1), per (user id, route): first and last hit and how
-- many. Each replica aggregates hits in memory and upserts them in one
-- statement every few seconds (api/legacy_auth.go); `meshd legacy-auth
-- report` reads it, broker_legacy_auth_users counts users seen in 24 h.
CREATE TABLE mesh.legacy_auth_use (
	user_id  text NOT NULL,
	route    text NOT NULL,
	first_at timestamptz NOT NULL,
	last_at  timestamptz NOT NULL,
	hits     bigint NOT NULL CHECK (hits > 0),
	PRIMARY KEY (user_id, route)
);
CREATE INDEX legacy_auth_use_last_idx ON mesh.legacy_auth_use (last_at);
