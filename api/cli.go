package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Legacy auth shim response headers (docs/protocol.md B.9.3), byte for byte:
// operators and old clients key on them.
const (
	legacyDeprecation = `version="legacy-body-userid"; sunset="2026-05-15"`
	legacyWarning     = `299 - "body.user_id auth is deprecated; send Authorization: Bearer <session_token>"`
)

// jsonBody is a request body read by readBody.
type jsonBody struct {
	raw    []byte
	fields map[string]json.RawMessage
	// legacyUser is body.user_id when it is a non-empty string (B.9.3).
	legacyUser string
}

// readBody reads r's body as one JSON object, capped at MaxMessageBytes so
// a client cannot make a replica buffer an unbounded body (B.9.2: 413
// {ok:false, error:"payload too large"}). An empty body is {}. Malformed
// JSON or a non-object answers 400 with the reason. On failure the response
// is written and ok is false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (*jsonBody, bool) {
	max := int64(s.cfg.MaxMessageBytes)
	if r.ContentLength > max {
		cliError(w, http.StatusRequestEntityTooLarge, "payload too large")
		return nil, false
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		cliError(w, http.StatusRequestEntityTooLarge, "payload too large")
		return nil, false
	case err != nil:
		badBody(w, "could not read body: "+err.Error())
		return nil, false
	}
	b := &jsonBody{raw: raw, fields: map[string]json.RawMessage{}}
	if len(strings.TrimSpace(string(raw))) == 0 {
		b.raw = []byte("{}")
		return b, true
	}
	if err := json.Unmarshal(raw, &b.fields); err != nil || b.fields == nil {
		badBody(w, jsonReason(err, "body must be a JSON object"))
		return nil, false
	}
	if wire.HasNUL(raw) { // text columns cannot hold U+0000 (issue 12 item 8)
		body := errorBody(w, wire.CodeInvalidString)
		body["reason"] = wire.MsgInvalidString
		writeJSON(w, http.StatusBadRequest, body)
		return nil, false
	}
	if u, ok := b.fields["user_id"]; ok {
		_ = json.Unmarshal(u, &b.legacyUser) // non-strings leave it empty
	}
	return b, true
}

// decode fills dst from the body; a field of the wrong JSON type answers
// 400 naming the field.
func (b *jsonBody) decode(w http.ResponseWriter, dst any) bool {
	if err := json.Unmarshal(b.raw, dst); err != nil {
		badBody(w, jsonReason(err, "malformed JSON"))
		return false
	}
	return true
}

// badBody answers 400 Invalid body (B.7's wording) with a reason.
func badBody(w http.ResponseWriter, reason string) {
	body := errorBody(w, "Invalid body")
	body["reason"] = reason
	writeJSON(w, http.StatusBadRequest, body)
}

// jsonReason turns a decode error into a reason a client can act on,
// without Go type names.
func jsonReason(err error, fallback string) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field != "":
		return fmt.Sprintf("%s must be %s, not %s", te.Field, jsonKind(te.Type), te.Value)
	case errors.As(err, &te):
		return fmt.Sprintf("body must be a JSON object, not %s", te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)
	case err != nil && errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	case err != nil:
		return "malformed JSON: " + err.Error()
	}
	return fallback
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64:
		return "an integer"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "an object"
}

// cliError answers {ok:false, error:msg, requestId}.
func cliError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody(w, msg))
}

// cliAuth authenticates a CLI request (B.9.3, requireCliAuth). A header
// starting with the exact, case-sensitive "Bearer " carries the token:
// empty → 401 empty_bearer_token; unknown, revoked or expired → 401
// invalid_or_revoked_token; a database failure → 500 auth_check_failed.
// Without one, the legacy shim (BROKER_LEGACY_AUTH=1) accepts legacyUser
// (body.user_id, or ?user_id= for GET /cli/meshes) with the deprecation
// headers, the metric and a warn log; otherwise 401 missing_bearer_token.
// On failure the response is written and ok is false.
func (s *Server) cliAuth(w http.ResponseWriter, r *http.Request, legacyUser string) (userID string, ok bool) {
	// HTTP strips trailing whitespace from header values, so "Bearer "
	// with an empty token arrives as "Bearer".
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") || h == "Bearer" {
		tok := strings.TrimSpace(strings.TrimPrefix(h, "Bearer"))
		if tok == "" {
			cliError(w, http.StatusUnauthorized, "empty_bearer_token")
			return "", false
		}
		user, _, err := s.cfg.Store.LookupCLIToken(r.Context(), tok)
		switch {
		case errors.Is(err, meshd.ErrNotFound):
			cliError(w, http.StatusUnauthorized, "invalid_or_revoked_token")
			return "", false
		case err != nil:
			s.internalError(w, r, s.log.Error().Err(err), "cli auth check failed")
			return "", false
		}
		return user, true
	}
	if s.cfg.LegacyAuth && legacyUser != "" {
		w.Header().Set("Deprecation", legacyDeprecation)
		w.Header().Set("Warning", legacyWarning)
		s.met.legacyAuthHits.Inc()
		s.legacy.hit(legacyUser, r.Pattern, s.cfg.Now())
		s.log.Warn().Str("route", r.Pattern).Str("user_id", legacyUser).Msg("legacy auth accepted")
		return legacyUser, true
	}
	cliError(w, http.StatusUnauthorized, "missing_bearer_token")
	return "", false
}

// handleSessionRevoke is POST /cli/session/revoke {token}: possession of the
// token is the authorization (logout).
func (s *Server) handleSessionRevoke(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Token string `json:"token"`
	}
	if !body.decode(w, &req) {
		return
	}
	if strings.TrimSpace(req.Token) == "" {
		cliError(w, http.StatusBadRequest, "token required")
		return
	}
	found, err := s.cfg.Store.RevokeCLIToken(r.Context(), strings.TrimSpace(req.Token))
	if err != nil {
		s.internalError(w, r, s.log.Error().Err(err), "revoke cli token")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "found": found})
}

// isHex64 reports whether s is 64 hex digits of either case (upstream's
// case-insensitive /^[0-9a-f]{64}$/i).
func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
