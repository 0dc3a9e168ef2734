package collab

import (
	"context"
	"strings"
)

func (h *Handler) shareContext(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Summary     *string  `json:"summary"`
		FilesRead   []string `json:"filesRead"`
		KeyFindings []string `json:"keyFindings"`
		Tags        []string `json:"tags"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if m.Summary == nil || strings.TrimSpace(*m.Summary) == "" {
		return nil, invalidArgs("summary is required")
	}
	if err := checkTags("tags", m.Tags); err != nil {
		return nil, err
	}
	if len(m.FilesRead) > 1000 || len(m.KeyFindings) > 1000 {
		return nil, invalidArgs("filesRead and keyFindings: at most 1000 entries each")
	}
	name := orUnknown(p.MemberName)
	c := SharedContext{PeerName: name, Summary: *m.Summary, FilesRead: nonNil(m.FilesRead),
		KeyFindings: nonNil(m.KeyFindings), Tags: nonNil(m.Tags)}
	id, err := h.st.ShareContext(ctx, p.MeshID, p.MemberID, p.PresenceID, c)
	if err != nil {
		return nil, err
	}
	// E.7: the other sockets of the mesh hear about it as a state_change
	// (not stored in mesh.state, as upstream).
	if h.pub != nil {
		change := map[string]any{"type": "state_change", "key": "_context:" + name, "value": c.Summary, "updatedBy": name}
		if err := h.pub.PublishMesh(ctx, p.MeshID, change, p.PresenceID); err != nil {
			h.log.Warn().Err(err).Str("mesh", p.MeshID).Msg("share_context: state_change push failed")
		}
	}
	// Beyond upstream, which omits it (E.16-13): _reqId is echoed.
	f := newFrame("context_shared", req)
	f["id"] = id
	return []any{f}, nil
}

func (h *Handler) getContext(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Query *string `json:"query"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if m.Query == nil || *m.Query == "" {
		return nil, invalidArgs("query is required")
	}
	if err := checkQuery(*m.Query); err != nil {
		return nil, err
	}
	rows, err := h.st.SearchContexts(ctx, p.MeshID, *m.Query, contextLimit)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(rows))
	for _, c := range rows {
		out = append(out, map[string]any{"peerName": c.PeerName, "summary": c.Summary, "filesRead": nonNil(c.FilesRead),
			"keyFindings": nonNil(c.KeyFindings), "tags": nonNil(c.Tags), "updatedAt": iso(c.UpdatedAt)})
	}
	f := newFrame("context_results", req)
	f["contexts"] = out
	return []any{f}, nil
}

func (h *Handler) listContexts(ctx context.Context, p Peer, req *request) ([]any, error) {
	rows, err := h.st.ListContexts(ctx, p.MeshID)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(rows))
	for _, c := range rows {
		out = append(out, map[string]any{"peerName": c.PeerName, "summary": c.Summary, "tags": nonNil(c.Tags), "updatedAt": iso(c.UpdatedAt)})
	}
	f := newFrame("context_list", req)
	f["contexts"] = out
	return []any{f}, nil
}
