package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/meshd/meshd"
)

// Mesh clocks (docs/protocol.md B.14.4): the verbs. The clock is a row in
// Postgres that these change from any replica; the leader-run clock job
// (package jobs) advances due clocks and pushes the ticks to the mesh.

type clockStatus struct {
	Type      string  `json:"type"` // "clock_status"
	Speed     float64 `json:"speed"`
	Paused    bool    `json:"paused"`
	Tick      int64   `json:"tick"`
	SimTime   string  `json:"simTime"`
	StartedAt string  `json:"startedAt"`
	ReqID     string  `json:"_reqId,omitempty"`
}

// handleClockVerb dispatches set_clock, pause_clock, resume_clock and
// get_clock; each answers clock_status.
func (s *Server) handleClockVerb(ctx context.Context, c *conn, data []byte, reqID string) error {
	var m struct {
		Type  string          `json:"type"`
		Speed json.RawMessage `json:"speed"`
	}
	if err := decode(data, &m, "clock frame"); err != nil {
		return err
	}
	pres, _, _ := c.snapshot()
	var (
		clk meshd.Clock
		err error
	)
	switch m.Type {
	case "set_clock":
		clk, err = s.cfg.Store.SetClock(ctx, pres.MeshID, clockSpeed(m.Speed))
	case "pause_clock":
		clk, err = s.cfg.Store.PauseClock(ctx, pres.MeshID)
	case "resume_clock":
		clk, err = s.cfg.Store.ResumeClock(ctx, pres.MeshID)
	default:
		clk, err = s.cfg.Store.GetClock(ctx, pres.MeshID)
	}
	switch {
	case errors.Is(err, meshd.ErrNotFound) && m.Type == "get_clock":
		now := s.cfg.Now()
		clk = meshd.Clock{Paused: true, SimTime: now, StartedAt: now} // B.14.4 defaults
	case errors.Is(err, meshd.ErrNotFound):
		c.sendError("no_clock", "No clock running for this mesh", reqID)
		return nil
	case err != nil:
		return fmt.Errorf("%s failed: %w", m.Type, err)
	}
	c.send(clockStatus{Type: "clock_status", ReqID: reqID, Speed: clk.Speed, Paused: clk.Paused, Tick: clk.Tick,
		SimTime: isoTime(clk.SimTime), StartedAt: isoTime(clk.StartedAt)})
	return nil
}

// clockSpeed applies upstream's clamp(Number(speed) || 1, 1, 100) with JS
// Number semantics for the JSON values a client can send.
func clockSpeed(raw json.RawMessage) float64 {
	var v any
	_ = json.Unmarshal(raw, &v)
	n := 0.0
	switch x := v.(type) {
	case float64:
		n = x
	case string:
		if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
			n = f
		}
	case bool:
		if x {
			n = 1
		}
	}
	if n == 0 || math.IsNaN(n) {
		n = 1
	}
	return math.Min(100, math.Max(1, n))
}
