package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
)

// Vault entries and webhooks (migration 0021; docs/protocol.md C): their
// secrets are sealed with the keyring (internal/seal), bound to the row id,
// and are never written without a key.

var errNoKeyring = errors.New("secrets need BROKER_ENCRYPTION_KEY")

func aadVaultValue(id string) string    { return "mesh.vault_entry.value:" + id }
func aadWebhookSecret(id string) string { return "mesh.webhook.secret:" + id }

// SealsSecrets reports whether the store has a keyring to seal vault
// values and webhook secrets with.
func (s *Store) SealsSecrets() bool { return s.kr != nil }

// vaultValue is what mesh.vault_entry.value seals: the client's own
// encryption of the value, opaque to meshd.
type vaultValue struct {
	Ciphertext string `json:"c"`
	Nonce      string `json:"n"`
	SealedKey  string `json:"k"`
}

// VaultSet upserts the member's entry by key. The row gets a new id on
// every write (the associated data of its sealed value), under a lock on
// the member row so the entry cap holds under concurrent writes.
func (s *Store) VaultSet(ctx context.Context, meshID, memberID string, e collab.VaultEntry, maxEntries int) error {
	if s.kr == nil {
		return fmt.Errorf("vault set: %w", errNoKeyring)
	}
	id := meshd.NewID()
	plain, err := json.Marshal(vaultValue{e.Ciphertext, e.Nonce, e.SealedKey})
	if err != nil {
		return fmt.Errorf("vault set: %w", err)
	}
	sealed, err := s.kr.Seal(string(plain), aadVaultValue(id))
	if err != nil {
		return fmt.Errorf("vault set: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var n int
		var exists bool
		err := tx.QueryRow(ctx, `
SELECT (SELECT count(*) FROM mesh.vault_entry WHERE mesh_id = $1 AND member_id = $2),
	EXISTS (SELECT 1 FROM mesh.vault_entry WHERE mesh_id = $1 AND member_id = $2 AND key = $3)
FROM mesh.member WHERE id = $2 AND mesh_id = $1 FOR UPDATE`, meshID, memberID, e.Key).Scan(&n, &exists)
		if err != nil {
			return notFound(err)
		}
		if !exists && n >= maxEntries {
			return collab.ErrLimit
		}
		_, err = tx.Exec(ctx, `
INSERT INTO mesh.vault_entry (id, mesh_id, member_id, key, value, entry_type, mount_path, description)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (mesh_id, member_id, key) DO UPDATE SET id = EXCLUDED.id, value = EXCLUDED.value,
	entry_type = EXCLUDED.entry_type, mount_path = EXCLUDED.mount_path, description = EXCLUDED.description,
	updated_at = now()`,
			id, meshID, memberID, e.Key, sealed, e.EntryType, nullIfEmpty(e.MountPath), nullIfEmpty(e.Description))
		return err
	})
	if err != nil {
		return fmt.Errorf("vault set: %w", err)
	}
	return nil
}

// VaultList returns the member's entries by key, without their values.
func (s *Store) VaultList(ctx context.Context, meshID, memberID string) ([]collab.VaultEntry, error) {
	rows, err := s.pool.Query(ctx, `
SELECT key, entry_type, COALESCE(mount_path, ''), COALESCE(description, ''), updated_at
FROM mesh.vault_entry WHERE mesh_id = $1 AND member_id = $2 ORDER BY key`, meshID, memberID)
	if err != nil {
		return nil, fmt.Errorf("vault list: %w", err)
	}
	var e collab.VaultEntry
	out, err := collectRows(rows, []any{&e.Key, &e.EntryType, &e.MountPath, &e.Description, &e.UpdatedAt}, &e)
	if err != nil {
		return nil, fmt.Errorf("vault list: %w", err)
	}
	return out, nil
}

// VaultDelete deletes the member's entry by key.
func (s *Store) VaultDelete(ctx context.Context, meshID, memberID, key string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mesh.vault_entry WHERE mesh_id = $1 AND member_id = $2 AND key = $3`,
		meshID, memberID, key)
	if err != nil {
		return false, fmt.Errorf("vault delete: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// VaultGet returns the member's entries among keys, values opened.
func (s *Store) VaultGet(ctx context.Context, meshID, memberID string, keys []string) ([]collab.VaultEntry, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id, key, value, entry_type, COALESCE(mount_path, ''), COALESCE(description, ''), updated_at
FROM mesh.vault_entry WHERE mesh_id = $1 AND member_id = $2 AND key = ANY($3) ORDER BY key`, meshID, memberID, keys)
	if err != nil {
		return nil, fmt.Errorf("vault get: %w", err)
	}
	var out []collab.VaultEntry
	var id, sealed string
	var e collab.VaultEntry
	_, err = pgx.ForEachRow(rows, []any{&id, &e.Key, &sealed, &e.EntryType, &e.MountPath, &e.Description, &e.UpdatedAt}, func() error {
		plain, err := s.kr.Open(sealed, aadVaultValue(id))
		if err != nil {
			return err
		}
		var v vaultValue
		if err := json.Unmarshal([]byte(plain), &v); err != nil {
			return fmt.Errorf("entry %s: %w", id, err)
		}
		e.Ciphertext, e.Nonce, e.SealedKey = v.Ciphertext, v.Nonce, v.SealedKey
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("vault get: %w", err)
	}
	return out, nil
}

// CreateWebhook inserts an active webhook with w.Secret sealed (its lookup
// key is the hex SHA-256 of the secret, tokenHash), under a
// transaction-scoped advisory lock of the mesh so the cap holds.
func (s *Store) CreateWebhook(ctx context.Context, meshID string, w *collab.Webhook, maxActive int) error {
	if s.kr == nil {
		return fmt.Errorf("create webhook: %w", errNoKeyring)
	}
	w.ID = meshd.NewID()
	sealed, err := s.kr.Seal(w.Secret, aadWebhookSecret(w.ID))
	if err != nil {
		return fmt.Errorf("create webhook: %w", err)
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var n int
		err := tx.QueryRow(ctx, `
SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended('mesh.webhook:' || $1, 0))) l,
	mesh.webhook WHERE mesh_id = $1 AND active`, meshID).Scan(&n)
		if err != nil {
			return err
		}
		if n >= maxActive {
			return collab.ErrLimit
		}
		return tx.QueryRow(ctx, `
INSERT INTO mesh.webhook (id, mesh_id, name, secret, secret_hash, created_by) VALUES ($1, $2, $3, $4, $5, $6)
RETURNING created_at`, w.ID, meshID, w.Name, sealed, tokenHash(w.Secret), nullIfEmpty(w.CreatedBy)).Scan(&w.CreatedAt)
	})
	switch {
	case isUniqueViolation(err):
		return collab.ErrExists
	case errors.Is(err, collab.ErrLimit):
		return err
	case err != nil:
		return fmt.Errorf("create webhook: %w", err)
	}
	return nil
}

// ListWebhooks returns the mesh's active webhooks by name, secrets opened.
func (s *Store) ListWebhooks(ctx context.Context, meshID string) ([]collab.Webhook, error) {
	rows, err := s.pool.Query(ctx, `
SELECT id, name, secret, COALESCE(created_by, ''), created_at FROM mesh.webhook
WHERE mesh_id = $1 AND active ORDER BY name`, meshID)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	var out []collab.Webhook
	var w collab.Webhook
	_, err = pgx.ForEachRow(rows, []any{&w.ID, &w.Name, &w.Secret, &w.CreatedBy, &w.CreatedAt}, func() error {
		secret, err := s.kr.Open(w.Secret, aadWebhookSecret(w.ID))
		if err != nil {
			return err
		}
		w.Secret = secret
		out = append(out, w)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	return out, nil
}

// DeleteWebhook deactivates the active webhook name if memberID created it
// or admin is set.
func (s *Store) DeleteWebhook(ctx context.Context, meshID, name, memberID string, admin bool) error {
	var deleted bool
	err := s.pool.QueryRow(ctx, `
WITH w AS (SELECT id, created_by FROM mesh.webhook WHERE mesh_id = $1 AND name = $2 AND active),
d AS (UPDATE mesh.webhook SET active = false, deleted_at = now()
	WHERE id = (SELECT id FROM w) AND ($4 OR created_by = $3) RETURNING id)
SELECT EXISTS (SELECT 1 FROM d) FROM w`, meshID, name, memberID, admin).Scan(&deleted)
	if err != nil {
		return fmt.Errorf("delete webhook: %w", notFound(err))
	}
	if !deleted {
		return collab.ErrForbidden
	}
	return nil
}

// InboundWebhook is the active webhook an inbound POST addresses.
type InboundWebhook struct {
	ID, Name string
	// Peers is the number of live presences of the mesh (grace leases
	// included), upstream's "delivered" count.
	Peers int
}

// WebhookBySecret finds the active webhook of meshID whose secret is
// secret, in a live mesh; meshd.ErrNotFound when the mesh does not exist
// (or is archived), ErrWebhookUnauthorized when it does but no active
// webhook has that secret.
func (s *Store) WebhookBySecret(ctx context.Context, meshID, secret string) (InboundWebhook, error) {
	var w InboundWebhook
	var id, name *string
	err := s.pool.QueryRow(ctx, `
SELECT w.id, w.name, (SELECT count(*) FROM mesh.presence p WHERE p.mesh_id = m.id AND p.disconnected_at IS NULL)
FROM mesh.mesh m LEFT JOIN mesh.webhook w ON w.mesh_id = m.id AND w.secret_hash = $2 AND w.active
WHERE m.id = $1 AND m.archived_at IS NULL`, meshID, tokenHash(secret)).Scan(&id, &name, &w.Peers)
	if err != nil {
		return w, fmt.Errorf("webhook by secret: %w", notFound(err))
	}
	if id == nil {
		return w, ErrWebhookUnauthorized
	}
	w.ID, w.Name = *id, *name
	return w, nil
}

// ErrWebhookUnauthorized: the mesh exists but no active webhook of it has
// the secret.
var ErrWebhookUnauthorized = errors.New("no active webhook with this secret")

// collectRows scans every row into dst's fields (scan targets) and returns
// the copies.
func collectRows[T any](rows pgx.Rows, scans []any, dst *T) ([]T, error) {
	var out []T
	_, err := pgx.ForEachRow(rows, scans, func() error { out = append(out, *dst); return nil })
	return out, err
}
