package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd/internal/seal"
)

// sealedColumns are the secrets at rest (issue 12 item 7) with the
// associated data of each row.
var sealedColumns = []struct {
	table, col string
	aad        func(id string) string
}{
	{"mesh.mesh", "owner_secret_key", aadOwnerSecret},
	{"mesh.mesh", "root_key", aadRootKey},
	{"mesh.invite", "token", aadInviteToken},
	{"mesh.invite", "token_bytes", aadInviteCanonical},
	{"mesh.vault_entry", "value", aadVaultValue},
	{"mesh.webhook", "secret", aadWebhookSecret},
}

// ResealSecrets seals every secret that is not sealed under the keyring's
// current key: plaintext rows from before BROKER_ENCRYPTION_KEY (at first
// start) and rows of a previous key (`meshd keys rotate`). Each row is
// swapped with a compare-and-set, so replicas running it at once agree.
// It returns how many values it re-sealed, and how many remain under a key
// the keyring does not hold (those cannot be read until it does).
func (s *Store) ResealSecrets(ctx context.Context) (resealed, unreadable int, err error) {
	if s.kr == nil {
		return 0, 0, errors.New("reseal secrets: no BROKER_ENCRYPTION_KEY")
	}
	cur := s.kr.CurrentID()
	for _, c := range sealedColumns {
		rows, err := s.pool.Query(ctx, fmt.Sprintf(
			"SELECT id, %[1]s FROM %[2]s WHERE %[1]s IS NOT NULL AND %[1]s <> '' AND %[1]s NOT LIKE $1",
			c.col, c.table), "enc1:"+cur+":%")
		if err != nil {
			return resealed, unreadable, fmt.Errorf("reseal %s.%s: %w", c.table, c.col, err)
		}
		type row struct{ id, v string }
		var todo []row
		var r row
		if _, err := pgx.ForEachRow(rows, []any{&r.id, &r.v}, func() error { todo = append(todo, r); return nil }); err != nil {
			return resealed, unreadable, fmt.Errorf("reseal %s.%s: %w", c.table, c.col, err)
		}
		for _, r := range todo {
			pt, err := s.kr.Open(r.v, c.aad(r.id))
			if errors.Is(err, seal.ErrNoKey) {
				unreadable++
				continue
			}
			if err != nil {
				return resealed, unreadable, fmt.Errorf("reseal %s.%s row %s: %w", c.table, c.col, r.id, err)
			}
			nv, err := s.kr.Seal(pt, c.aad(r.id))
			if err != nil {
				return resealed, unreadable, err
			}
			tag, err := s.pool.Exec(ctx, fmt.Sprintf("UPDATE %s SET %s = $1 WHERE id = $2 AND %[2]s = $3", c.table, c.col), nv, r.id, r.v)
			if err != nil {
				return resealed, unreadable, fmt.Errorf("reseal %s.%s row %s: %w", c.table, c.col, r.id, err)
			}
			resealed += int(tag.RowsAffected())
		}
	}
	return resealed, unreadable, nil
}

// SealedSecretsExist reports whether any secret is stored sealed: a
// replica without a key must not start against such a database.
func (s *Store) SealedSecretsExist(ctx context.Context) (bool, error) {
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM mesh.mesh WHERE owner_secret_key LIKE 'enc1:%' OR root_key LIKE 'enc1:%')
	OR EXISTS (SELECT 1 FROM mesh.invite WHERE token LIKE 'enc1:%')
	OR EXISTS (SELECT 1 FROM mesh.vault_entry) OR EXISTS (SELECT 1 FROM mesh.webhook)`).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("sealed secrets: %w", err)
	}
	return ok, nil
}
