package collab

import (
	"context"

	"github.com/meshd/meshd"
)

// meshInfo answers mesh_info (E.6). Files, per-mesh SQL tables and vector
// collections are features meshd does not have: 0 and [] are their honest
// values. A failure still answers mesh_info_result (never an error frame:
// it would pop the client's list_state call, E.14.3).
func (h *Handler) meshInfo(ctx context.Context, p Peer, req *request) ([]any, error) {
	st, err := h.st.MeshStats(ctx, p.MeshID)
	if err != nil {
		return nil, err
	}
	yourName := orUnknown(p.DisplayName)
	groups := p.Groups
	if groups == nil {
		groups = []meshd.Group{}
	}
	tasks := st.Tasks
	if tasks == nil {
		tasks = map[string]int{}
	}
	for _, k := range []string{"open", "claimed", "done"} {
		tasks[k] += 0
	}
	f := newFrame("mesh_info_result", req)
	f["mesh"], f["peers"], f["groups"], f["stateKeys"] = p.MeshID, st.Peers, nonNil(st.Groups), nonNil(st.StateKeys)
	f["memoryCount"], f["fileCount"], f["tasks"], f["streams"] = st.MemoryCount, 0, tasks, nonNil(st.Streams)
	f["tables"], f["collections"], f["yourName"], f["yourGroups"] = []string{}, []string{}, yourName, groups
	return []any{f}, nil
}
