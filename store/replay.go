package store

import (
	"context"
	"fmt"
	"time"
)

// ClaimHelloSignature records the first use of a verified hello or
// session_hello signature (A.3-21). fresh is false when the signature was
// already used and has not expired yet: the handshake is a replay. The row
// lives for keep (measured on the database clock, so every replica agrees);
// an expired row is taken over by the new use.
func (s *Store) ClaimHelloSignature(ctx context.Context, signature string, keep time.Duration) (fresh bool, err error) {
	tag, err := s.pool.Exec(ctx, `
INSERT INTO mesh.hello_signature (signature, expires_at)
VALUES ($1, now() + make_interval(secs => $2::float8))
ON CONFLICT (signature) DO UPDATE SET expires_at = EXCLUDED.expires_at
WHERE mesh.hello_signature.expires_at < now()`, signature, secs(keep))
	if err != nil {
		return false, fmt.Errorf("claim hello signature: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// DeleteExpiredHelloSignatures removes used signatures past their expiry
// (the upkeep leader runs it).
func (s *Store) DeleteExpiredHelloSignatures(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mesh.hello_signature WHERE expires_at < now()`)
	if err != nil {
		return 0, fmt.Errorf("delete expired hello signatures: %w", err)
	}
	return tag.RowsAffected(), nil
}
