package verbs

import (
	"context"
	"encoding/json"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// The audit chain's verbs (docs/protocol.md B.8): audit_query and
// audit_verify, for any authenticated member of the mesh.

const (
	// auditQueryMaxLimit caps audit_query's page so one reply stays a
	// bounded frame (state_set payloads may carry values of up to 64 KiB).
	auditQueryMaxLimit = 500
	auditQueryDefault  = 50
)

// AuditLog reads the per-mesh hash chain (B.8).
type AuditLog interface {
	// VerifyAudit walks the chain oldest first; brokenAt is the id of the
	// first row whose link or hash does not match.
	VerifyAudit(ctx context.Context, meshID string) (valid bool, entries int, brokenAt *int64, err error)
	// QueryAudit returns a page of the chain newest first and the number of
	// rows matching eventType ("" matches all).
	QueryAudit(ctx context.Context, meshID string, limit, offset int, eventType string) ([]meshd.AuditEntry, int, error)
}

// auditEntryFrame is one entry of audit_result (B.8).
type auditEntryFrame struct {
	ID        int64           `json:"id"`
	EventType string          `json:"eventType"`
	Actor     string          `json:"actor"`
	Payload   json.RawMessage `json:"payload"`
	Hash      string          `json:"hash"`
	CreatedAt string          `json:"createdAt"`
}

// auditQuery answers audit_query {limit?, offset?, eventType?} with
// audit_result, newest first. limit defaults to 50 and is clamped to
// [1, 500]; a negative or missing offset is 0; fractional numbers are
// truncated.
func (h *Handler) auditQuery(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	var m struct {
		Limit     *float64 `json:"limit"`
		Offset    *float64 `json:"offset"`
		EventType string   `json:"eventType"`
	}
	if err := decode(data, &m, "audit_query"); err != nil {
		return nil, refuse("audit_query_error", err.Error())
	}
	limit, offset := auditPage(m.Limit, m.Offset)
	h.cfg.Audit.Sync(ctx, p.Presence.MeshID)
	entries, total, err := h.cfg.Store.QueryAudit(ctx, p.Presence.MeshID, limit, offset, m.EventType)
	if err != nil {
		h.cfg.Logger.Warn().Err(err).Str("mesh_id", p.Presence.MeshID).Msg("audit query failed")
		return nil, refuse("audit_query_error", "audit query failed")
	}
	out := make([]auditEntryFrame, 0, len(entries))
	for _, e := range entries {
		out = append(out, auditEntryFrame{ID: e.ID, EventType: e.EventType, Actor: e.Actor(),
			Payload: e.Payload, Hash: e.Hash, CreatedAt: wire.FormatISOTime(e.CreatedAt)})
	}
	return withReqID(map[string]any{"type": "audit_result", "entries": out, "total": total}, reqID), nil
}

func auditPage(limit, offset *float64) (int, int) {
	l, o := auditQueryDefault, 0
	if limit != nil {
		l = int(min(max(*limit, 1), auditQueryMaxLimit))
	}
	if offset != nil && *offset > 0 {
		o = int(min(*offset, 1<<31-1))
	}
	return l, o
}

// auditVerify answers audit_verify with audit_verify_result.
func (h *Handler) auditVerify(ctx context.Context, p Peer, _ []byte, reqID string) (any, error) {
	h.cfg.Audit.Sync(ctx, p.Presence.MeshID)
	valid, entries, brokenAt, err := h.cfg.Store.VerifyAudit(ctx, p.Presence.MeshID)
	if err != nil {
		h.cfg.Logger.Warn().Err(err).Str("mesh_id", p.Presence.MeshID).Msg("audit verify failed")
		return nil, refuse("audit_verify_error", "audit verify failed")
	}
	res := map[string]any{"type": "audit_verify_result", "valid": valid, "entries": entries}
	if brokenAt != nil {
		res["brokenAt"] = *brokenAt
	}
	return withReqID(res, reqID), nil
}
