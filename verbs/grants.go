package verbs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/meshd/meshd"
)

// Grants over the member's own WebSocket (docs/protocol.md A.3-31): a
// member who joined by invite has no CLI bearer token, so it reads and
// merges the peer_grants of its own member row (B.7) on its connection.
// A session_hello connection acts on its parent member's row.

// Grants bounds: entries in one set_grants and in a member row.
const (
	maxGrantsPatch = 100
	maxGrantsTotal = 1000
)

// GrantsStore reads and merges a member's peer_grants (store.Store).
type GrantsStore interface {
	// MemberGrants returns peer_grants keyed by member id for the given
	// members of meshID (missing members are absent from the map).
	MemberGrants(ctx context.Context, meshID string, memberIDs []string) (map[string]meshd.Grants, error)
	// MergeMemberGrants merges patch into the active member's peer_grants
	// (nil deletes a key) when the result has at most max entries (else ok
	// is false and nothing changes); meshd.ErrNotFound when the member is
	// not active.
	MergeMemberGrants(ctx context.Context, meshID, memberID string, patch meshd.Grants, max int) (meshd.Grants, bool, error)
}

// grantsFrame answers get_grants and set_grants.
type grantsFrame struct {
	Type   string       `json:"type"` // "grants"
	Grants meshd.Grants `json:"grants"`
	ReqID  string       `json:"_reqId,omitempty"`
}

var grantKeyRe = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// getGrants answers get_grants {_reqId} with {type:"grants", grants,
// _reqId}, the member's row as stored.
func (h *Handler) getGrants(ctx context.Context, p Peer, _ []byte, reqID string) (any, error) {
	g, err := h.cfg.Store.MemberGrants(ctx, p.Presence.MeshID, []string{p.Member.ID})
	if err != nil {
		return nil, fmt.Errorf("get_grants failed: %w", err)
	}
	return grantsFrame{Type: "grants", Grants: nonNil(g[p.Member.ID]), ReqID: reqID}, nil
}

// setGrants serves set_grants {grants: {<pubkey>: [caps] | null}, _reqId}
// and answers as get_grants does with the merged row.
func (h *Handler) setGrants(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	var m struct {
		Grants json.RawMessage `json:"grants"`
	}
	if err := decode(data, &m, "grants frame"); err != nil {
		return nil, err
	}
	patch, code, msg := parseGrantsPatch(m.Grants)
	if code != "" {
		return nil, refuse(code, msg)
	}
	g, ok, err := h.cfg.Store.MergeMemberGrants(ctx, p.Presence.MeshID, p.Member.ID, patch, maxGrantsTotal)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		return nil, refuse("not_a_member", "your member row is no longer active in this mesh")
	case err != nil:
		return nil, fmt.Errorf("set_grants failed: %w", err)
	case !ok:
		return nil, refuse("too_many_grants", fmt.Sprintf("set_grants: a member keeps at most %d grant entries", maxGrantsTotal))
	}
	h.cfg.Logger.Info().Str("mesh_id", p.Presence.MeshID).Str("member_id", p.Member.ID).Int("entries", len(patch)).Msg("grants set over websocket")
	return grantsFrame{Type: "grants", Grants: nonNil(g), ReqID: reqID}, nil
}

// parseGrantsPatch validates set_grants' grants object: 64-hex keys
// (stored lower-case), values an array of known capabilities (deduplicated;
// [] blocks) or null (back to the defaults), at most maxGrantsPatch
// entries. A refusal is an error code and message for the client.
func parseGrantsPatch(obj json.RawMessage) (meshd.Grants, string, string) {
	var raw map[string]json.RawMessage
	if len(obj) == 0 || obj[0] != '{' || json.Unmarshal(obj, &raw) != nil {
		return nil, "grants_required", "set_grants: grants must be an object {<64-hex pubkey>: [caps] | null}"
	}
	switch {
	case len(raw) == 0:
		return nil, "grants_required", "set_grants: grants is empty"
	case len(raw) > maxGrantsPatch:
		return nil, "too_many_grants", fmt.Sprintf("set_grants: at most %d entries per request", maxGrantsPatch)
	}
	patch := make(meshd.Grants, len(raw))
	for k, v := range raw {
		if !grantKeyRe.MatchString(k) {
			return nil, "invalid_pubkey", fmt.Sprintf("set_grants: key %q is not a 64-hex pubkey", truncate(k, 72))
		}
		k = strings.ToLower(k)
		if _, dup := patch[k]; dup {
			return nil, "invalid_pubkey", "set_grants: pubkey " + k + " appears twice"
		}
		var caps []string
		if err := json.Unmarshal(v, &caps); err != nil {
			return nil, "invalid_capabilities", fmt.Sprintf("set_grants: the value for %s must be an array of capability names or null", k[:12])
		}
		if caps == nil { // JSON null: delete the entry
			patch[k] = nil
			continue
		}
		clean := []string{}
		for _, cp := range caps {
			if !slices.Contains(meshd.KnownCaps, cp) {
				return nil, "unknown_capability", fmt.Sprintf("set_grants: unknown capability %q (known: %s)", truncate(cp, 32), strings.Join(meshd.KnownCaps, ", "))
			}
			if !slices.Contains(clean, cp) {
				clean = append(clean, cp)
			}
		}
		patch[k] = clean
	}
	return patch, "", ""
}

func nonNil(g meshd.Grants) meshd.Grants {
	if g == nil {
		return meshd.Grants{}
	}
	return g
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
