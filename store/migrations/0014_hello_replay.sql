-- 0014: single-use handshake signatures (docs/protocol.md A.3-21). A hello
-- or session_hello signature is recorded on its first verified use and
-- refused afterwards until it expires (well past the 60 s skew window);
-- the upkeep leader deletes expired rows. UNLOGGED: after a crash the table
-- is empty, which at worst lets a signature from the last two minutes be
-- used once more — no worse than before this table existed.
CREATE UNLOGGED TABLE mesh.hello_signature (
	signature  text PRIMARY KEY,
	expires_at timestamptz NOT NULL
);

CREATE INDEX hello_signature_expires_idx ON mesh.hello_signature (expires_at);
