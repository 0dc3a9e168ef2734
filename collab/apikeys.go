package collab

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/meshd/meshd"
)

// API key bounds and format (E.3).
const (
	maxLiveAPIKeys  = 100 // live (not revoked, not expired) keys per mesh
	apiKeyListLimit = 200
	apiKeyPrefixLen = 11 // "cm_" + 8, as upstream
	maxAPIKeyTTL    = 366 * 24 * time.Hour
)

// APIKeyCapabilities are the capabilities a key may carry (upstream's enum,
// which it never enforced, E.16-11). meshd's REST surface reads "read";
// "admin" can only be granted by a mesh admin.
var APIKeyCapabilities = []string{"send", "read", "state_write", "admin"}

// newAPIKeySecret is "cm_" + base64url (no padding) of 32 random bytes: 46
// characters, upstream's format, so a key minted here also has the form
// the web app checks.
func newAPIKeySecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "cm_" + base64.RawURLEncoding.EncodeToString(b[:])
}

func (h *Handler) apikeyCreate(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Label        string   `json:"label"`
		Capabilities []string `json:"capabilities"`
		TopicScopes  []string `json:"topicScopes"`
		ExpiresAt    *string  `json:"expiresAt"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if m.Label == "" || len(m.Capabilities) == 0 {
		return nil, invalidArgs("label and at least one capability required")
	}
	if err := checkName("label", m.Label); err != nil {
		return nil, err
	}
	caps, err := checkCapabilities(m.Capabilities, p.Admin)
	if err != nil {
		return nil, err
	}
	if err := checkTags("topicScopes", m.TopicScopes); err != nil {
		return nil, err
	}
	k := APIKey{Label: m.Label, Capabilities: caps, TopicScopes: m.TopicScopes, IssuedBy: p.MemberID}
	if m.ExpiresAt != nil {
		t, err := time.Parse(time.RFC3339Nano, *m.ExpiresAt)
		now := time.Now()
		switch {
		case err != nil:
			return nil, invalidArgs("expiresAt must be an ISO 8601 timestamp")
		case !t.After(now):
			return nil, invalidArgs("expiresAt must be in the future")
		case t.Sub(now) > maxAPIKeyTTL:
			return nil, invalidArgs("expiresAt must be within a year")
		}
		k.ExpiresAt = &t
	}
	secret := newAPIKeySecret()
	k.Prefix = secret[:apiKeyPrefixLen]
	err = h.st.CreateAPIKey(ctx, p.MeshID, &k, secret, maxLiveAPIKeys)
	if errors.Is(err, ErrLimit) {
		return nil, reject("limit_reached", fmt.Sprintf("a mesh has at most %d live API keys", maxLiveAPIKeys))
	}
	if err != nil {
		return nil, err
	}
	f := newFrame("apikey_created", req)
	f["id"], f["secret"], f["label"], f["prefix"] = k.ID, secret, k.Label, k.Prefix
	f["capabilities"], f["topicScopes"], f["createdAt"] = k.Capabilities, scopes(k.TopicScopes), iso(k.CreatedAt)
	return []any{f}, nil
}

// checkCapabilities validates and de-duplicates a capability list.
func checkCapabilities(in []string, admin bool) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, c := range in {
		known := false
		for _, k := range APIKeyCapabilities {
			known = known || c == k
		}
		switch {
		case !known:
			return nil, invalidArgs(fmt.Sprintf("unknown capability %q (send, read, state_write, admin)", truncateText(c, 32)))
		case c == "admin" && !admin:
			return nil, reject("forbidden", "only a mesh admin can mint a key with the admin capability")
		case !seen[c]:
			seen[c] = true
			out = append(out, c)
		}
	}
	return out, nil
}

func truncateText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// scopes renders topic scopes: null means every topic.
func scopes(s []string) any {
	if s == nil {
		return nil
	}
	return s
}

func (h *Handler) apikeyList(ctx context.Context, p Peer, req *request) ([]any, error) {
	rows, err := h.st.ListAPIKeys(ctx, p.MeshID, apiKeyListLimit)
	if err != nil {
		return nil, err
	}
	keys := make([]map[string]any, 0, len(rows))
	for _, k := range rows {
		keys = append(keys, map[string]any{"id": k.ID, "label": k.Label, "prefix": k.Prefix,
			"capabilities": nonNil(k.Capabilities), "topicScopes": scopes(k.TopicScopes), "createdAt": iso(k.CreatedAt),
			"lastUsedAt": isoOrNil(k.LastUsedAt), "revokedAt": isoOrNil(k.RevokedAt), "expiresAt": isoOrNil(k.ExpiresAt)})
	}
	f := newFrame("apikey_list_response", req)
	f["keys"] = keys
	return []any{f}, nil
}

func (h *Handler) apikeyRevoke(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		ID string `json:"id"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if m.ID == "" {
		return nil, invalidArgs("id required")
	}
	if len(m.ID) < MinIDPrefix || len(m.ID) > maxNameLen {
		return nil, invalidArgs(fmt.Sprintf("id must be the key id or a prefix of at least %d characters", MinIDPrefix))
	}
	f := newFrame("apikey_revoke_response", req)
	id, err := h.st.RevokeAPIKey(ctx, p.MeshID, m.ID, p.MemberID, p.Admin)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		f["status"] = "not_found"
	case errors.Is(err, meshd.ErrAmbiguous):
		f["status"], f["matches"] = "not_unique", 2
	case errors.Is(err, ErrForbidden):
		return nil, reject("forbidden", "only the key's issuer or a mesh admin can revoke it")
	case err != nil:
		return nil, err
	default:
		f["status"], f["id"] = "revoked", id
	}
	return []any{f}, nil
}
