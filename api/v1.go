package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/store"
)

// GET /api/v1/members is the one route of upstream's REST surface meshd
// serves (docs/protocol.md C.7): what `claudemesh member list` reads after
// minting a short-lived API key over the WebSocket (apikey_create). The key
// is the bearer token; it scopes the answer to its own mesh. A missing,
// unknown, revoked or expired key is 401 {error:"unauthorized"}; a key
// without the read capability is 403.

// APIKeys is what the REST surface asks of the database.
type APIKeys interface {
	// LookupAPIKey returns a live key by its secret and records its use;
	// meshd.ErrNotFound for an unknown, revoked or expired key or an
	// archived mesh.
	LookupAPIKey(ctx context.Context, secret string) (store.APIKeyAuth, error)
	// APIMembers lists the active members of a mesh with their online
	// state.
	APIMembers(ctx context.Context, meshID string) ([]store.APIMember, error)
}

// apiKeyAuth authenticates a /api/v1 request by its bearer API key and
// checks capability; on failure the response is written and ok is false.
func (s *Server) apiKeyAuth(w http.ResponseWriter, r *http.Request, capability string) (store.APIKeyAuth, bool) {
	h := r.Header.Get("Authorization")
	tok := strings.TrimSpace(strings.TrimPrefix(h, "Bearer"))
	if !strings.HasPrefix(h, "Bearer ") || !strings.HasPrefix(tok, "cm_") || len(tok) > 128 {
		s.met.apiKeyRequests.WithLabelValues("unauthorized").Inc()
		cliError(w, http.StatusUnauthorized, "unauthorized")
		return store.APIKeyAuth{}, false
	}
	key, err := s.cfg.Store.LookupAPIKey(r.Context(), tok)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		s.met.apiKeyRequests.WithLabelValues("unauthorized").Inc()
		cliError(w, http.StatusUnauthorized, "unauthorized")
		return key, false
	case err != nil:
		s.internalError(w, r, s.log.Error().Err(err), "api key check failed")
		return key, false
	}
	if !slices.Contains(key.Capabilities, capability) && !slices.Contains(key.Capabilities, "admin") {
		s.met.apiKeyRequests.WithLabelValues("forbidden").Inc()
		body := errorBody(w, "forbidden")
		body["detail"] = "this API key lacks the " + capability + " capability"
		writeJSON(w, http.StatusForbidden, body)
		return key, false
	}
	return key, true
}

// apiMember is one row of GET /api/v1/members, in the shape the 1.37 CLI
// reads.
type apiMember struct {
	MemberID    string  `json:"memberId"`
	Pubkey      string  `json:"pubkey"`
	DisplayName string  `json:"displayName"`
	Role        string  `json:"role"`
	IsHuman     bool    `json:"isHuman"`
	JoinedAt    string  `json:"joinedAt"`
	Online      bool    `json:"online"`
	Status      string  `json:"status"`
	Summary     *string `json:"summary"`
}

func (s *Server) handleAPIMembers(w http.ResponseWriter, r *http.Request) {
	key, ok := s.apiKeyAuth(w, r, "read")
	if !ok {
		return
	}
	rows, err := s.cfg.Store.APIMembers(r.Context(), key.MeshID)
	if err != nil {
		s.internalError(w, r, s.log.Error().Err(err).Str("mesh_id", key.MeshID), "api members failed")
		return
	}
	out := make([]apiMember, 0, len(rows))
	for _, m := range rows {
		out = append(out, apiMember{MemberID: m.MemberID, Pubkey: m.Pubkey, DisplayName: m.DisplayName, Role: m.Role,
			IsHuman: m.PeerType == "human", JoinedAt: m.JoinedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
			Online: m.Online, Status: m.Status, Summary: m.Summary})
	}
	s.met.apiKeyRequests.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, map[string]any{"members": out})
}
