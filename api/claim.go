package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/meshd/meshd"
)

// handleInviteClaim is upstream's v2 claim, POST /invites/{code}/claim
// (and the web app's /api/public/… path the claudemesh CLI posts to when
// given an /i/ link). meshd keeps v2 claims off, as upstream does unless
// BROKER_INVITE_V2_ENABLED=1: the v2 member it would create could never
// pass hello (B.9.5). So, after validating the body as upstream does (400
// {error:"malformed"}), it answers 501 {error:"invite_v2_disabled", detail}
// and the detail tells the user to join with the token link, spelled out
// when the code is known (GET /i/{code} hands out the same token).
func (s *Server) handleInviteClaim(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxMessageBytes)))
	var body struct {
		Recipient any `json:"recipient_x25519_pubkey"`
	}
	if err != nil || json.Unmarshal(raw, &body) != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "malformed"})
		return
	}
	if k, ok := body.Recipient.(string); !ok || k == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "malformed"})
		return
	}
	detail := "v2 invite claims are disabled on this broker; join with the invite's token link instead " +
		"(claudemesh join https://HOST/join/TOKEN, the token that `meshctl invite --json` prints)"
	code := strings.ToUpper(r.PathValue("code"))
	if code != "" && len(code) <= maxInviteCodeLen && strings.Trim(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == "" {
		token, err := s.cfg.Store.InviteTokenByCode(r.Context(), code)
		switch {
		case err == nil:
			detail = "v2 invite claims are disabled on this broker; join with the token link instead: claudemesh join " +
				s.joinURL(r, token)
		case !errors.Is(err, meshd.ErrNotFound):
			s.log.Warn().Err(err).Msg("invite claim: token by code")
		}
	}
	writeJSON(w, http.StatusNotImplemented, map[string]any{"error": "invite_v2_disabled", "detail": detail})
}
