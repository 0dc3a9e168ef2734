package collab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/meshd/meshd"
)

// maxWebhooks bounds the active webhooks of a mesh.
const maxWebhooks = 100

// WebhookPath is the inbound route of a webhook (E.11), served by package
// api: POST /hook/<meshId>/<secret>.
func WebhookPath(meshID, secret string) string { return "/hook/" + meshID + "/" + secret }

func (h *Handler) webhookURL(meshID, secret string) string {
	return h.publicURL + WebhookPath(meshID, secret)
}

// newWebhookSecret is 32 random bytes as 64 lowercase hex, the length and
// alphabet of upstream's secrets.
func newWebhookSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (h *Handler) createWebhook(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Name string `json:"name"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if err := checkName("name", m.Name); err != nil {
		return nil, reject("invalid_webhook", err.(*Error).Message)
	}
	w := Webhook{Name: m.Name, Secret: newWebhookSecret(), CreatedBy: p.MemberID}
	err := h.st.CreateWebhook(ctx, p.MeshID, &w, maxWebhooks)
	switch {
	case errors.Is(err, ErrExists):
		return nil, reject("webhook_exists", fmt.Sprintf("Webhook %q already exists in this mesh", m.Name))
	case errors.Is(err, ErrLimit):
		return nil, reject("limit_reached", fmt.Sprintf("a mesh has at most %d active webhooks", maxWebhooks))
	case err != nil:
		return nil, err
	}
	f := newFrame("webhook_ack", req)
	f["name"], f["url"], f["secret"] = w.Name, h.webhookURL(p.MeshID, w.Secret), w.Secret
	return []any{f}, nil
}

func (h *Handler) listWebhooks(ctx context.Context, p Peer, req *request) ([]any, error) {
	rows, err := h.st.ListWebhooks(ctx, p.MeshID)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(rows))
	for _, w := range rows {
		out = append(out, map[string]any{"name": w.Name, "url": h.webhookURL(p.MeshID, w.Secret),
			"active": true, "createdAt": iso(w.CreatedAt)})
	}
	f := newFrame("webhook_list", req)
	f["webhooks"] = out
	return []any{f}, nil
}

func (h *Handler) deleteWebhook(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Name string `json:"name"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if err := checkName("name", m.Name); err != nil {
		return nil, err
	}
	err := h.st.DeleteWebhook(ctx, p.MeshID, m.Name, p.MemberID, p.Admin)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		return nil, reject("not_found", fmt.Sprintf("no active webhook %q in this mesh", m.Name))
	case errors.Is(err, ErrForbidden):
		return nil, reject("forbidden", "only the webhook's creator or a mesh admin can delete it")
	case err != nil:
		return nil, err
	}
	f := newFrame("webhook_ack", req)
	f["name"], f["url"], f["secret"] = m.Name, "", ""
	return []any{f}, nil
}
