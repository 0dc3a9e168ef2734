package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/meshd/meshd"
)

// cliTokenBytes is the entropy of a CLI bearer token: 256 bits, so the
// stored SHA-256 cannot be reversed by guessing.
const cliTokenBytes = 32

// tokenHash is the stored form of a CLI token: lowercase hex SHA-256 of the
// token string as sent after "Bearer " (B.9.3).
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateCLIToken mints a bearer token for userID (A.3-15: created by the
// operator with `meshd token create`): 32 random bytes, base64url without
// padding. Only its SHA-256 is stored; the token itself is returned once and
// never again. The token does not expire until revoked.
func (s *Store) CreateCLIToken(ctx context.Context, userID string) (token string, err error) {
	if userID == "" {
		return "", errors.New("create cli token: userID is required")
	}
	var b [cliTokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("create cli token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	_, err = s.pool.Exec(ctx, "INSERT INTO mesh.cli_session (id, user_id, token_hash) VALUES ($1, $2, $3)",
		meshd.NewID(), userID, tokenHash(token))
	if err != nil {
		return "", fmt.Errorf("create cli token: %w", err)
	}
	return token, nil
}

// LookupCLIToken validates a bearer token (B.9.3): its hash must name a
// cli_session that is neither revoked nor expired, else meshd.ErrNotFound.
// It bumps last_seen_at in the same statement and returns the session's user
// and id.
func (s *Store) LookupCLIToken(ctx context.Context, token string) (userID, sessionID string, err error) {
	if token == "" {
		return "", "", fmt.Errorf("lookup cli token: %w", meshd.ErrNotFound)
	}
	err = s.pool.QueryRow(ctx, `
UPDATE mesh.cli_session SET last_seen_at = now()
WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
RETURNING user_id, id`, tokenHash(token)).Scan(&userID, &sessionID)
	if err != nil {
		return "", "", fmt.Errorf("lookup cli token: %w", notFound(err))
	}
	return userID, sessionID, nil
}

// RevokeCLIToken revokes the session of token (POST /cli/session/revoke);
// found reports whether the token names a session (already revoked ones
// included, which keep their first revocation time).
func (s *Store) RevokeCLIToken(ctx context.Context, token string) (found bool, err error) {
	tag, err := s.pool.Exec(ctx,
		"UPDATE mesh.cli_session SET revoked_at = COALESCE(revoked_at, now()) WHERE token_hash = $1", tokenHash(token))
	if err != nil {
		return false, fmt.Errorf("revoke cli token: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}
