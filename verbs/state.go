package verbs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Shared state (docs/protocol.md B.14.1): one key-value map per mesh in
// Postgres; a set is pushed to every other socket of the mesh as
// state_change over the fan-out.

// StateStore backs set_state, get_state and list_state.
type StateStore interface {
	SetState(ctx context.Context, meshID, key string, value json.RawMessage, presenceID, name string) (meshd.StateEntry, error)
	GetState(ctx context.Context, meshID, key string) (meshd.StateEntry, error)
	ListState(ctx context.Context, meshID string) ([]meshd.StateEntry, error)
}

func (h *Handler) setState(ctx context.Context, p Peer, data []byte, _ string) (any, error) {
	var m struct {
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	if err := decode(data, &m, "set_state"); err != nil {
		return nil, err
	}
	if m.Key == "" || len(m.Value) == 0 {
		return nil, invalid("set_state: key and value required")
	}
	name := p.Member.DisplayName
	if name == "" {
		name = "unknown"
	}
	e, err := h.cfg.Store.SetState(ctx, p.Presence.MeshID, m.Key, m.Value, p.Presence.ID, name)
	if err != nil {
		return nil, fmt.Errorf("set_state failed: %w", err)
	}
	h.audit(ctx, p, "state_set", map[string]any{"key": e.Key, "value": e.Value})
	// No reply to the setter: clients rely on it (B.14.1).
	change, err := json.Marshal(map[string]any{"type": "state_change", "key": e.Key, "value": e.Value, "updatedBy": e.UpdatedBy})
	if err != nil {
		return nil, err
	}
	ev := meshd.MeshEvent{Kind: meshd.MeshEventFrame, Frame: change, ExcludePresenceID: p.Presence.ID}
	raw, err := ev.Encode()
	if err != nil {
		return nil, err
	}
	return nil, h.cfg.Publisher.Publish(ctx, meshd.MeshTopic(p.Presence.MeshID), raw)
}

func (h *Handler) getState(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	var m struct {
		Key string `json:"key"`
	}
	if err := decode(data, &m, "get_state"); err != nil {
		return nil, err
	}
	e, err := h.cfg.Store.GetState(ctx, p.Presence.MeshID, m.Key)
	res := withReqID(map[string]any{"type": "state_result", "key": m.Key}, reqID)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		res["value"], res["updatedBy"], res["updatedAt"] = nil, "", ""
	case err != nil:
		return nil, fmt.Errorf("get_state failed: %w", err)
	default:
		res["value"], res["updatedBy"], res["updatedAt"] = e.Value, e.UpdatedBy, wire.FormatISOTime(e.UpdatedAt)
	}
	return res, nil
}

func (h *Handler) listState(ctx context.Context, p Peer, _ []byte, reqID string) (any, error) {
	entries, err := h.cfg.Store.ListState(ctx, p.Presence.MeshID)
	if err != nil {
		return nil, fmt.Errorf("list_state failed: %w", err)
	}
	out := make([]map[string]any, 0, len(entries))
	for _, e := range entries {
		out = append(out, map[string]any{"key": e.Key, "value": e.Value, "updatedBy": e.UpdatedBy, "updatedAt": wire.FormatISOTime(e.UpdatedAt)})
	}
	return withReqID(map[string]any{"type": "state_list", "entries": out}, reqID), nil
}
