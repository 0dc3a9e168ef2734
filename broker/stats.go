package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"math"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// hello_ack's meshPolicy and restoredStats (docs/protocol.md C.3).

// defaultSelfEditable is upstream's column default, sent when
// mesh.self_editable is NULL (meshd's column has no default).
var defaultSelfEditable = json.RawMessage(`{"displayName":true,"roleTag":true,"groups":true,"messageMode":true}`)

// meshPolicy is the hello_ack meshPolicy of every successful hello and
// session_hello.
func meshPolicy(m meshd.Mesh) *wire.MeshPolicy {
	se := m.SelfEditable
	if len(se) == 0 || bytes.Equal(se, []byte("null")) {
		se = defaultSelfEditable
	}
	return &wire.MeshPolicy{SelfEditable: se}
}

// statFields are the counters of set_stats that peer_state keeps.
var statFields = []string{"messagesIn", "messagesOut", "toolCalls", "errors"}

// handleSetStats keeps the connection's last reported counters (no reply,
// B.6.7); the close path merges them into the member's peer_state, which
// the next restored hello sends back as restoredStats.
func (s *Server) handleSetStats(_ context.Context, c *conn, data []byte, _ string) error {
	var m struct {
		Stats json.RawMessage `json:"stats"`
	}
	if err := decode(data, &m, "set_stats"); err != nil {
		return err
	}
	var in map[string]any
	if err := json.Unmarshal(m.Stats, &in); err != nil || in == nil {
		return invalid("set_stats: stats must be an object")
	}
	// Only the four counters, as finite non-negative numbers; the rest
	// (uptime, …) is not kept.
	out := map[string]float64{}
	for _, k := range statFields {
		if v, ok := in[k].(float64); ok && v >= 0 && !math.IsInf(v, 0) {
			out[k] = v
		}
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return err
	}
	s.stats.Store(c, json.RawMessage(raw))
	return nil
}

// flushStats forgets the closed connection's counters and, when the socket
// still owned its presence, merges them into peer_state: per field the
// larger of the stored and the reported value (the client reports totals
// seeded from restoredStats, so a sum would double them).
func (s *Server) flushStats(ctx context.Context, c *conn, pres meshd.Presence, owned bool) {
	v, ok := s.stats.LoadAndDelete(c)
	if !ok || !owned {
		return
	}
	if err := s.cfg.Store.MergePeerStats(ctx, pres.MeshID, pres.MemberID, v.(json.RawMessage)); err != nil {
		c.logger().Warn().Err(err).Msg("merge peer stats")
	}
}
