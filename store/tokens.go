package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

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
	token, _, err = s.CreateCLITokenTTL(ctx, userID, 0)
	return token, err
}

// CreateCLITokenTTL is CreateCLIToken with an expiry: a ttl > 0 sets
// expires_at to now()+ttl (database clock), after which LookupCLIToken
// refuses the token; 0 means it never expires. It also returns the
// session id that `meshd token list` shows and `meshd token revoke --id`
// takes.
func (s *Store) CreateCLITokenTTL(ctx context.Context, userID string, ttl time.Duration) (token, id string, err error) {
	if userID == "" {
		return "", "", errors.New("create cli token: userID is required")
	}
	if ttl < 0 {
		return "", "", errors.New("create cli token: negative ttl")
	}
	var b [cliTokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("create cli token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b[:])
	id = meshd.NewID()
	var expires *string
	if ttl > 0 {
		e := fmt.Sprintf("%d microseconds", ttl.Microseconds())
		expires = &e
	}
	_, err = s.pool.Exec(ctx, `
INSERT INTO mesh.cli_session (id, user_id, token_hash, expires_at)
VALUES ($1, $2, $3, now() + $4::interval)`, id, userID, tokenHash(token), expires)
	if err != nil {
		return "", "", fmt.Errorf("create cli token: %w", err)
	}
	return token, id, nil
}

// CLITokenInfo describes one CLI session for operators; it never holds the
// token or its hash.
type CLITokenInfo struct {
	ID         string
	UserID     string
	Hostname   string // set when the session came from a device login
	CreatedAt  time.Time
	LastSeenAt *time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	// Active: neither revoked nor expired (what LookupCLIToken accepts).
	Active bool
}

// ListCLITokens lists CLI sessions newest first, of one user when userID
// is set; revoked and expired ones only when all is true.
func (s *Store) ListCLITokens(ctx context.Context, userID string, all bool) ([]CLITokenInfo, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id, user_id, COALESCE(hostname, ''), created_at, last_seen_at, expires_at, revoked_at,
       revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS active
FROM mesh.cli_session
WHERE ($1 = '' OR user_id = $1)
  AND ($2 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())))
ORDER BY created_at DESC, id`, userID, all)
	if err != nil {
		return nil, fmt.Errorf("list cli tokens: %w", err)
	}
	defer rows.Close()
	var out []CLITokenInfo
	for rows.Next() {
		var i CLITokenInfo
		if err := rows.Scan(&i.ID, &i.UserID, &i.Hostname, &i.CreatedAt, &i.LastSeenAt, &i.ExpiresAt, &i.RevokedAt, &i.Active); err != nil {
			return nil, fmt.Errorf("list cli tokens: %w", err)
		}
		out = append(out, i)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list cli tokens: %w", err)
	}
	return out, nil
}

// RevokeCLITokens revokes the session with id, or every session of userID
// when id is empty (exactly one of them must be set), and returns the ids
// it revoked now (already revoked sessions keep their first revocation
// time and are not returned).
func (s *Store) RevokeCLITokens(ctx context.Context, id, userID string) ([]string, error) {
	if (id == "") == (userID == "") {
		return nil, errors.New("revoke cli tokens: exactly one of id and userID is required")
	}
	rows, err := s.pool.Query(ctx, `
UPDATE mesh.cli_session SET revoked_at = now()
WHERE revoked_at IS NULL AND (($1 <> '' AND id = $1) OR ($2 <> '' AND user_id = $2))
RETURNING id`, id, userID)
	if err != nil {
		return nil, fmt.Errorf("revoke cli tokens: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("revoke cli tokens: %w", err)
	}
	return ids, nil
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
