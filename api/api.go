// Package api owns the HTTP control plane of a replica: enrollment and CLI
// routes (/cli/*, /join, invite short links, docs/protocol.md B.9.3-B.9.5)
// and the Claude Code status hook (/hook/set-status, B.6.4). It never touches
// a socket: it reads and writes Postgres through the small interfaces of
// deps.go and wakes sockets on whichever replica holds them by publishing on
// meshd.PeerTopic. cmd/meshd registers its routes on the same mux as the
// broker's.
package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd/internal/httpx"
)

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	Store    Store                 // required
	Fanout   Publisher             // required: hook wake-ups
	Registry prometheus.Registerer // required: the control plane's metrics
	Logger   zerolog.Logger

	// MaxMessageBytes caps request bodies (B.9.2); default 65536.
	MaxMessageBytes int
	// HookFreshWindow is HOOK_FRESH_WINDOW_SECONDS (B.6.2); default 30s.
	HookFreshWindow time.Duration
	// HookRateLimitPerMin is the hook bucket capacity and refill (B.6.4);
	// default 30.
	HookRateLimitPerMin int
	// HookRateLimitPerIPPerMin is HOOK_RATE_LIMIT_PER_IP_PER_MIN: the hook
	// bucket of one client IP, whatever its pids and cwds; default 300.
	HookRateLimitPerIPPerMin int
	// WebhookRateLimitPerMin is the bucket of one webhook's inbound route
	// (capacity and refill per minute); default 60.
	WebhookRateLimitPerMin int
	// WebhookRateLimitPerIPPerMin is the inbound webhook bucket of one
	// client IP, whatever the webhook; default 600.
	WebhookRateLimitPerIPPerMin int
	// LegacyAuth enables the BROKER_LEGACY_AUTH=1 body user_id shim (B.9.3).
	LegacyAuth bool
	// PublicURL is the broker's public WebSocket URL put into invites
	// (BROKER_URL); default derived from the request's Host.
	PublicURL string
	// AppURL prefixes invite short links (APP_URL); default: this broker.
	AppURL string
	// LegacyAuthFlush is how often Run writes who used the legacy shim
	// (legacy_auth.go); default 10s.
	LegacyAuthFlush time.Duration

	Now func() time.Time // default time.Now
}

func (c *Config) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("api: Store required")
	case c.Fanout == nil:
		return errors.New("api: Fanout required")
	case c.Registry == nil:
		return errors.New("api: Registry required")
	}
	def(&c.MaxMessageBytes, 65536)
	def(&c.HookFreshWindow, 30*time.Second)
	def(&c.HookRateLimitPerMin, 30)
	def(&c.HookRateLimitPerIPPerMin, 300)
	def(&c.WebhookRateLimitPerMin, 60)
	def(&c.WebhookRateLimitPerIPPerMin, 600)
	def(&c.LegacyAuthFlush, 10*time.Second)
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// def sets *p to v when *p is unset (zero or negative).
func def[T int | float64 | time.Duration](p *T, v T) {
	if *p <= 0 {
		*p = v
	}
}

// Server is one replica's control plane.
type Server struct {
	cfg  Config // immutable after New
	log  zerolog.Logger
	met  *metrics
	hook *hookHandler
	// webhook serves inbound webhooks (webhook.go).
	webhook *webhookHandler
	// legacy counts who uses the legacy shim until Run flushes it.
	legacy *legacyRecorder
}

// New validates cfg and returns a Server; Register puts its routes on a mux.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger.With().Str("component", "api").Logger()}
	met, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s.met = met
	s.hook = newHookHandler(s)
	s.webhook = newWebhookHandler(s)
	s.legacy = newLegacyRecorder()
	if err := cfg.Registry.Register(s.legacy.users); err != nil {
		return nil, errors.Join(errors.New("api: metrics"), err)
	}
	evictions := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "broker_hook_rate_limit_evictions_total",
		Help: "Hook rate-limit keys (per IP and per pid/cwd) forgotten to keep the key set bounded."},
		func() float64 { return float64(s.hook.rl.Evictions() + s.hook.ipRL.Evictions()) })
	if err := cfg.Registry.Register(evictions); err != nil {
		return nil, errors.Join(errors.New("api: metrics"), err)
	}
	return s, nil
}

// Register adds the control plane's routes to mux. Every handler reads its
// body (capped, B.9.2) before it authenticates, so the legacy shim can see
// body.user_id, and answers every failure with a specific JSON error.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /cli/session/revoke", s.handleSessionRevoke)
	mux.HandleFunc("GET /cli/meshes", s.handleMeshList)
	mux.HandleFunc("POST /cli/mesh/create", s.handleMeshCreate)
	mux.HandleFunc("POST /cli/mesh/{slug}/invite", s.handleInviteCreate)
	mux.HandleFunc("POST /cli/mesh/{slug}/grants", s.handleGrants)
	mux.HandleFunc("DELETE /cli/mesh/{slug}", s.handleMeshDelete)
	mux.HandleFunc("POST /cli/mesh/{slug}/rename", s.handleMeshRename)
	mux.HandleFunc("POST /join", s.handleJoin)
	// Short links resolve against meshd itself, so a deployment without the
	// upstream web app can share invites (/i/ is what APP_URL links use;
	// the second path is the web app's API the upstream CLI calls).
	mux.HandleFunc("GET /i/{code}", s.handleInviteCode)
	mux.HandleFunc("GET /api/public/invite-code/{code}", s.handleInviteCode)
	mux.HandleFunc("POST /invites/{code}/claim", s.handleInviteClaim)
	mux.HandleFunc("POST /api/public/invites/{code}/claim", s.handleInviteClaim)
	mux.Handle("POST "+hookRoute, s.hook)
	mux.Handle("POST /hook/{meshId}/{secret}", s.webhook)
	mux.HandleFunc("GET /api/v1/members", s.handleAPIMembers)
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) { httpx.WriteJSON(w, status, v) }

// errorBody is {ok:false, error, requestId}; the request id lets a client
// quote the request an operator finds in the access log.
func errorBody(w http.ResponseWriter, msg string) map[string]any {
	return map[string]any{"ok": false, "error": msg, "requestId": httpx.RequestID(w)}
}

// internalError finishes ev (the caller's log event, with its context) with
// a new error id, the request id and the route, and answers 500
// {ok:false, error:"internal_error", errorId, requestId}: clients never see
// database text (docs/protocol.md A, decision 24), operators grep the id.
func (s *Server) internalError(w http.ResponseWriter, r *http.Request, ev *zerolog.Event, what string) {
	id := httpx.NewID()
	ev.Str("error_id", id).Str("request_id", httpx.RequestID(w)).Str("route", r.Pattern).Msg(what)
	body := errorBody(w, "internal_error")
	body["errorId"] = id
	writeJSON(w, http.StatusInternalServerError, body)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
