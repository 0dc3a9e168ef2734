-- 0015: invites are looked up by the SHA-256 of their token, so the token
-- itself can be stored sealed (issue 12 item 7: a read of the database must
-- not hand out joinable invites). Existing rows are hashed here; meshd seals
-- their plaintext tokens at its first start with BROKER_ENCRYPTION_KEY.
ALTER TABLE mesh.invite ADD COLUMN token_hash text;
UPDATE mesh.invite SET token_hash = encode(sha256(convert_to(token, 'UTF8')), 'hex');
ALTER TABLE mesh.invite ALTER COLUMN token_hash SET NOT NULL;
CREATE UNIQUE INDEX invite_token_hash_idx ON mesh.invite (token_hash);
