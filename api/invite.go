package api

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Invite limits (B.9.5 step 3): upstream's 7-day expiry and single use by
// default; meshd lets the owner ask for more uses, bounded so one leaked
// link cannot enrol an unbounded crowd.
const (
	inviteTTL         = 7 * 24 * time.Hour
	maxInviteUses     = 1000
	inviteSignRetries = 16 // same-second invites for one mesh and role: re-sign with a later expiry
	maxInviteCodeLen  = 32
)

// handleInviteCreate is POST /cli/mesh/:slug/invite {role?, max_uses?}
// (owner only): a v1 invite signed with the mesh owner key (B.9.5 step 3),
// answered with the short link, its code, expiry and the token itself.
func (s *Server) handleInviteCreate(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Role    string `json:"role"`
		MaxUses *int   `json:"max_uses"`
	}
	if !body.decode(w, &req) {
		return
	}
	ms, user, ok := s.ownedMesh(w, r, body, "Only the owner can invite (for now)")
	if !ok {
		return
	}
	role := req.Role
	switch role {
	case "":
		role = "member"
	case "admin", "member":
	default:
		cliError(w, http.StatusBadRequest, `role must be "admin" or "member"`)
		return
	}
	uses := 1
	if req.MaxUses != nil {
		uses = *req.MaxUses
	}
	if uses < 1 || uses > maxInviteUses {
		cliError(w, http.StatusBadRequest, fmt.Sprintf("max_uses must be between 1 and %d", maxInviteUses))
		return
	}
	owner, root, err := s.ownerKeys(r, ms)
	if err != nil {
		s.internalError(w, r, s.log.Error().Err(err).Str("mesh_id", ms.ID), "invite owner keys")
		return
	}
	p := &wire.InvitePayload{V: wire.InviteVersion, MeshID: ms.ID, MeshSlug: ms.Slug, BrokerURL: s.publicWSURL(r),
		ExpiresAt: s.cfg.Now().Add(inviteTTL).Unix(), MeshRootKey: root, Role: role}
	token, code, err := s.storeInvite(r, p, owner, uses, user)
	if err != nil {
		s.internalError(w, r, s.log.Error().Err(err).Str("mesh_id", ms.ID), "create invite")
		return
	}
	s.log.Info().Str("mesh_id", ms.ID).Str("role", role).Int("max_uses", uses).Str("user_id", user).Msg("invite created")
	writeJSON(w, http.StatusOK, map[string]any{
		"url": s.linkBase(r) + "/i/" + code, "code": code, "token": token, "join_url": s.joinURL(r, token),
		"expires_at": time.Unix(p.ExpiresAt, 0).UTC().Format(time.RFC3339),
		"role":       role, "max_uses": uses, "emailed": false,
	})
}

// joinURL is the token link of an invite, https://HOST/join/TOKEN: the form
// the upstream claudemesh CLI joins with (it treats /i/ links as v2 claims,
// which meshd does not serve; A.3-33). meshctl join takes both.
func (s *Server) joinURL(r *http.Request, token string) string {
	return s.linkBase(r) + "/join/" + token
}

// ownerKeys returns the mesh owner's signing key and the root key, creating
// them for a mesh that has none (upstream's self-heal).
func (s *Server) ownerKeys(r *http.Request, ms meshd.Mesh) (ed25519.PrivateKey, string, error) {
	pub, sec, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	pubHex, secHex, root, err := s.cfg.Store.EnsureOwnerKeys(r.Context(), ms.ID, hex.EncodeToString(pub), hex.EncodeToString(sec), newRootKey())
	if err != nil {
		return nil, "", err
	}
	raw, err := hex.DecodeString(secHex)
	var key ed25519.PrivateKey
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("owner secret key: %w", err)
	case len(raw) == ed25519.SeedSize:
		key = ed25519.NewKeyFromSeed(raw)
	case len(raw) == ed25519.PrivateKeySize:
		key = ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
	default:
		return nil, "", fmt.Errorf("owner secret key is %d bytes", len(raw))
	}
	if got := hex.EncodeToString(key.Public().(ed25519.PublicKey)); !strings.EqualFold(got, pubHex) {
		return nil, "", errors.New("owner secret key does not match owner_pubkey")
	}
	return key, root, nil
}

// storeInvite signs p and stores it. Tokens are deterministic, so a second
// invite for the same mesh and role in the same second would repeat the
// token: the expiry moves one second later and p is signed again.
func (s *Server) storeInvite(r *http.Request, p *wire.InvitePayload, owner ed25519.PrivateKey, uses int, user string) (token, code string, err error) {
	for i := 0; i < inviteSignRetries; i++ {
		wire.SignInvite(p, owner)
		if token, err = wire.EncodeInviteToken(p); err != nil {
			return "", "", err
		}
		if code, err = s.cfg.Store.CreateInvite(r.Context(), p, token, uses, user); err != nil || code != "" {
			return token, code, err
		}
		p.ExpiresAt++
	}
	return "", "", errors.New("invite token collided repeatedly")
}

// handleInviteCode is GET /i/:code and GET /api/public/invite-code/:code:
// {found:true, token} or 404 {found:false}. Codes are upper-case; lower
// case is accepted as typed by a human.
func (s *Server) handleInviteCode(w http.ResponseWriter, r *http.Request) {
	code := strings.ToUpper(r.PathValue("code"))
	if code == "" || len(code) > maxInviteCodeLen || strings.Trim(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
		writeJSON(w, http.StatusNotFound, map[string]any{"found": false})
		return
	}
	token, err := s.cfg.Store.InviteTokenByCode(r.Context(), code)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		writeJSON(w, http.StatusNotFound, map[string]any{"found": false})
	case err != nil:
		s.internalError(w, r, s.log.Error().Err(err), "invite by code")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"found": true, "token": token})
	}
}

// handleJoin is POST /join (B.9.5 step 1): the required fields, the pubkey
// shape and the signature are checked here, then the store runs the
// database checks in order in one transaction. Errors are 400
// {ok:false, error:<code>}.
func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		InviteToken   string          `json:"invite_token"`
		InvitePayload json.RawMessage `json:"invite_payload"`
		PeerPubkey    string          `json:"peer_pubkey"`
		DisplayName   string          `json:"display_name"`
	}
	if !body.decode(w, &req) {
		return
	}
	name := strings.TrimSpace(req.DisplayName)
	switch {
	case req.InviteToken == "" || len(req.InvitePayload) == 0 || req.InvitePayload[0] != '{' || req.PeerPubkey == "" || name == "":
		cliError(w, http.StatusBadRequest, "invite_token, invite_payload, peer_pubkey, display_name required")
		return
	case !isHex64(req.PeerPubkey):
		cliError(w, http.StatusBadRequest, "peer_pubkey must be 64 hex chars (32 bytes)")
		return
	case utf8.RuneCountInString(name) > maxMeshName: // the bound hello applies (issue 12 item 8)
		cliError(w, http.StatusBadRequest, "display_name too long (max 100 characters)")
		return
	}
	// A payload whose fields do not even decode cannot carry a valid
	// signature over them.
	var p wire.InvitePayload
	if err := json.Unmarshal(req.InvitePayload, &p); err != nil || !wire.VerifyInvite(&p) {
		cliError(w, http.StatusBadRequest, "invite_bad_signature")
		return
	}
	// Pubkeys are stored lower-case: hello looks members up by exact string
	// and real clients send lower-case hex (B.12).
	m := meshd.Member{Pubkey: strings.ToLower(req.PeerPubkey), DisplayName: name}
	already, code, err := s.cfg.Store.Join(r.Context(), &p, req.InviteToken, &m)
	switch {
	case err != nil:
		s.internalError(w, r, s.log.Error().Err(err).Str("mesh_id", p.MeshID), "join")
		return
	case code == joinMemberBanned:
		s.log.Warn().Str("mesh_id", p.MeshID).Str("pubkey", m.Pubkey).Msg("join refused: banned pubkey")
		cliError(w, http.StatusForbidden, code)
		return
	case code != "":
		s.log.Info().Str("mesh_id", p.MeshID).Str("error", code).Msg("join rejected")
		cliError(w, http.StatusBadRequest, code)
		return
	}
	s.log.Info().Str("mesh_id", p.MeshID).Str("member_id", m.ID).Bool("already_member", already).Msg("member joined")
	resp := map[string]any{"ok": true, "memberId": m.ID}
	if already {
		resp["alreadyMember"] = true
	}
	writeJSON(w, http.StatusOK, resp)
}

// publicWSURL is the broker URL put into invites and mesh lists: BROKER_URL,
// else ws(s)://<Host>/ws from the request (wss behind TLS or a proxy that
// says X-Forwarded-Proto: https).
func (s *Server) publicWSURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL
	}
	scheme := "ws"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "wss"
	}
	return scheme + "://" + r.Host + "/ws"
}

// linkBase prefixes invite short links: APP_URL, else this broker's HTTP
// base derived from its public WS URL as the CLI does (B.9.6: ws→http,
// wss→https, the trailing "/ws" removed).
func (s *Server) linkBase(r *http.Request) string {
	if s.cfg.AppURL != "" {
		return strings.TrimRight(s.cfg.AppURL, "/")
	}
	u, err := url.Parse(s.publicWSURL(r))
	if err != nil || u.Host == "" {
		return "http://" + r.Host
	}
	scheme := "http"
	if u.Scheme == "wss" || u.Scheme == "https" {
		scheme = "https"
	}
	return scheme + "://" + u.Host + strings.TrimRight(strings.TrimSuffix(u.Path, "/ws"), "/")
}

// joinMemberBanned is the store's join code for a pubkey banned in the
// mesh: 403, not 400, since the request is well formed but refused.
const joinMemberBanned = "member_banned"
