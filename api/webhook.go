package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/internal/httpx"
	"github.com/meshd/meshd/store"
)

// POST /hook/{meshId}/{secret} is a webhook's inbound route (docs/protocol.md
// C.6, upstream E.11): the body, a JSON object or array, becomes a push
// {type:"push", subtype:"webhook", event:<name>, eventData:<body>, …} to
// every socket of the mesh on every replica, published on the mesh's fan-out
// topic like any mesh event (the api never touches a socket). Like
// upstream the push is not queued: a peer offline at that moment never sees
// it. The answer is 200 {ok:true, delivered:<live presences of the mesh>}.
//
// Hostile callers: a per-IP bucket before anything else, the body capped at
// MAX_MESSAGE_BYTES (413), 404 for a mesh that does not exist, 401 for a
// secret no active webhook of the mesh has, 400 for a body that is not
// JSON or not an object or array, and a per-webhook bucket (429).

// Webhooks is what the inbound route asks of the database.
type Webhooks interface {
	// WebhookBySecret finds the active webhook of a live mesh by its
	// secret: meshd.ErrNotFound for no such mesh,
	// store.ErrWebhookUnauthorized for no such webhook.
	WebhookBySecret(ctx context.Context, meshID, secret string) (store.InboundWebhook, error)
}

// webhookTimeout bounds one request's database work and publish.
const webhookTimeout = 10 * time.Second

// webhookHandler serves the route; its buckets (rl keyed by webhook id,
// ipRL by client IP; per replica) live as long as the Server.
type webhookHandler struct {
	s *Server
	*buckets
}

func newWebhookHandler(s *Server) *webhookHandler {
	return &webhookHandler{s: s, buckets: newBuckets(s.cfg.WebhookRateLimitPerMin, s.cfg.WebhookRateLimitPerIPPerMin, s.cfg.Now())}
}

// webhookPush is the frame every socket of the mesh receives (E.11).
type webhookPush struct {
	Type         string          `json:"type"`
	Subtype      string          `json:"subtype"`
	Event        string          `json:"event"`
	EventData    json.RawMessage `json:"eventData"`
	MessageID    string          `json:"messageId"`
	MeshID       string          `json:"meshId"`
	SenderPubkey string          `json:"senderPubkey"`
	Priority     string          `json:"priority"`
	Nonce        string          `json:"nonce"`
	Ciphertext   string          `json:"ciphertext"`
	CreatedAt    string          `json:"createdAt"`
}

func webhookError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody(w, msg))
}

func (h *webhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.s
	now := s.cfg.Now()
	h.maybeSweep(now)
	meshID, secret := r.PathValue("meshId"), r.PathValue("secret")
	ip := clientIP(r)
	if !h.ipRL.Take(ip, now) {
		s.met.webhookRequests.WithLabelValues("rate_limited").Inc()
		webhookError(w, http.StatusTooManyRequests, "rate_limited")
		return
	}
	body, err := readHookBody(w, r, s.cfg.MaxMessageBytes)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.met.webhookRequests.WithLabelValues("too_large").Inc()
			webhookError(w, http.StatusRequestEntityTooLarge, "payload_too_large")
			return
		}
		webhookError(w, http.StatusBadRequest, "unreadable_body")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), webhookTimeout)
	defer cancel()
	hook, err := s.cfg.Store.WebhookBySecret(ctx, meshID, secret)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		s.met.webhookRequests.WithLabelValues("not_found").Inc()
		webhookError(w, http.StatusNotFound, "mesh_not_found")
		return
	case errors.Is(err, store.ErrWebhookUnauthorized):
		s.met.webhookRequests.WithLabelValues("unauthorized").Inc()
		s.log.Info().Str("route", r.Pattern).Str("mesh_id", meshID).Str("ip", ip).Msg("webhook with a wrong secret")
		webhookError(w, http.StatusUnauthorized, "unauthorized")
		return
	case err != nil:
		s.internalError(w, r, s.log.Error().Err(err).Str("mesh_id", meshID), "webhook lookup failed")
		return
	}
	if !h.rl.Take(hook.ID, now) {
		s.met.webhookRequests.WithLabelValues("rate_limited").Inc()
		webhookError(w, http.StatusTooManyRequests, "rate_limited")
		return
	}
	data := bytes.TrimSpace(body)
	if !json.Valid(data) {
		s.met.webhookRequests.WithLabelValues("bad_body").Inc()
		webhookError(w, http.StatusBadRequest, "invalid JSON")
		return
	}
	if len(data) == 0 || (data[0] != '{' && data[0] != '[') {
		s.met.webhookRequests.WithLabelValues("bad_body").Inc()
		webhookError(w, http.StatusBadRequest, "invalid JSON body: an object or an array is required")
		return
	}
	push := webhookPush{Type: "push", Subtype: "webhook", Event: hook.Name, EventData: data, MessageID: meshd.NewID(),
		MeshID: meshID, SenderPubkey: "webhook:" + hook.Name, Priority: "next",
		CreatedAt: now.UTC().Format("2006-01-02T15:04:05.000Z")}
	frame, err := json.Marshal(push)
	if err == nil {
		var ev []byte
		if ev, err = meshd.MeshFrameEvent(frame); err == nil {
			err = s.cfg.Fanout.Publish(ctx, meshd.MeshTopic(meshID), ev)
		}
	}
	if err != nil {
		s.internalError(w, r, s.log.Error().Err(err).Str("mesh_id", meshID).Str("webhook", hook.Name), "webhook publish failed")
		return
	}
	s.met.webhookRequests.WithLabelValues("delivered").Inc()
	s.log.Info().Str("route", r.Pattern).Str("mesh_id", meshID).Str("webhook", hook.Name).Int("bytes", len(data)).
		Int("delivered", hook.Peers).Str("request_id", httpx.RequestID(w)).Msg("webhook")
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "delivered": hook.Peers})
}
