package collab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Vault bounds (E.10 has none; the frame cap of 64 KiB bounds a request).
const (
	maxVaultEntries   = 256       // keys per member per mesh
	maxVaultValue     = 48 * 1024 // bytes of ciphertext
	maxVaultCryptoLen = 256       // bytes of nonce and of sealed_key
	maxVaultPathLen   = 1024      // mount_path
	maxVaultDescLen   = 1024      // description
	maxVaultGetKeys   = 256
)

// noKeyReason is why vault and webhooks fall back without an encryption
// key: their secrets are never stored in clear.
const noKeyReason = "this broker has no BROKER_ENCRYPTION_KEY, and vault values and webhook secrets are only stored encrypted"

func (h *Handler) vaultSet(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Key         string  `json:"key"`
		Ciphertext  string  `json:"ciphertext"`
		Nonce       string  `json:"nonce"`
		SealedKey   string  `json:"sealed_key"`
		EntryType   *string `json:"entry_type"`
		MountPath   string  `json:"mount_path"`
		Description string  `json:"description"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if err := checkName("key", m.Key); err != nil {
		return nil, err
	}
	switch {
	case m.Ciphertext == "" || m.Nonce == "" || m.SealedKey == "":
		return nil, invalidArgs("ciphertext, nonce and sealed_key are required")
	case len(m.Ciphertext) > maxVaultValue:
		return nil, invalidArgs(fmt.Sprintf("ciphertext longer than %d bytes", maxVaultValue))
	case len(m.Nonce) > maxVaultCryptoLen || len(m.SealedKey) > maxVaultCryptoLen:
		return nil, invalidArgs(fmt.Sprintf("nonce and sealed_key must be at most %d bytes", maxVaultCryptoLen))
	case len(m.MountPath) > maxVaultPathLen || !utf8.ValidString(m.MountPath):
		return nil, invalidArgs(fmt.Sprintf("mount_path must be at most %d bytes of text", maxVaultPathLen))
	case len(m.Description) > maxVaultDescLen || !utf8.ValidString(m.Description):
		return nil, invalidArgs(fmt.Sprintf("description must be at most %d bytes of text", maxVaultDescLen))
	}
	for _, s := range []string{m.Ciphertext, m.Nonce, m.SealedKey} {
		if strings.TrimRight(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_") != "" {
			return nil, invalidArgs("ciphertext, nonce and sealed_key must be base64")
		}
	}
	typ := "env"
	if m.EntryType != nil {
		typ = *m.EntryType
	}
	if typ != "env" && typ != "file" {
		return nil, invalidArgs(`entry_type must be "env" or "file"`)
	}
	e := VaultEntry{Key: m.Key, Ciphertext: m.Ciphertext, Nonce: m.Nonce, SealedKey: m.SealedKey,
		EntryType: typ, MountPath: m.MountPath, Description: m.Description}
	err := h.st.VaultSet(ctx, p.MeshID, p.MemberID, e, maxVaultEntries)
	if errors.Is(err, ErrLimit) {
		return nil, reject("limit_reached", fmt.Sprintf("a member keeps at most %d vault entries per mesh", maxVaultEntries))
	}
	if err != nil {
		return nil, err
	}
	f := newFrame("vault_ack", req)
	f["key"], f["action"] = m.Key, "stored"
	return []any{f}, nil
}

func (h *Handler) vaultList(ctx context.Context, p Peer, req *request) ([]any, error) {
	rows, err := h.st.VaultList(ctx, p.MeshID, p.MemberID)
	if err != nil {
		return nil, err
	}
	entries := make([]map[string]any, 0, len(rows))
	for _, e := range rows {
		entries = append(entries, map[string]any{"key": e.Key, "entry_type": e.EntryType,
			"mount_path": nilIfEmpty(e.MountPath), "description": nilIfEmpty(e.Description), "updated_at": iso(e.UpdatedAt)})
	}
	f := newFrame("vault_list_result", req)
	f["entries"] = entries
	return []any{f}, nil
}

func (h *Handler) vaultDelete(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Key string `json:"key"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if err := checkName("key", m.Key); err != nil {
		return nil, err
	}
	found, err := h.st.VaultDelete(ctx, p.MeshID, p.MemberID, m.Key)
	if err != nil {
		return nil, err
	}
	f := newFrame("vault_ack", req)
	f["key"], f["action"] = m.Key, "deleted"
	if !found {
		f["action"] = "not_found"
	}
	return []any{f}, nil
}

func (h *Handler) vaultGet(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Keys []string `json:"keys"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if len(m.Keys) > maxVaultGetKeys {
		return nil, invalidArgs(fmt.Sprintf("keys: at most %d entries", maxVaultGetKeys))
	}
	for _, k := range m.Keys {
		if err := checkName("keys", k); err != nil {
			return nil, err
		}
	}
	entries := []map[string]any{}
	if len(m.Keys) > 0 {
		rows, err := h.st.VaultGet(ctx, p.MeshID, p.MemberID, m.Keys)
		if err != nil {
			return nil, err
		}
		for _, e := range rows {
			entries = append(entries, map[string]any{"key": e.Key, "ciphertext": e.Ciphertext, "nonce": e.Nonce,
				"sealed_key": e.SealedKey, "entry_type": e.EntryType, "mount_path": nilIfEmpty(e.MountPath)})
		}
	}
	f := newFrame("vault_get_result", req)
	f["entries"] = entries
	return []any{f}, nil
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
