package verbs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Mesh clocks (docs/protocol.md B.14.4): the clock is a row in Postgres
// that these verbs change from any replica; the leader's clock job
// (package jobs) advances due clocks and pushes the ticks to the mesh.

// ClockStore holds one simulation clock per mesh (B.14.4).
type ClockStore interface {
	// SetClock creates the clock (tick 0, sim time = now, running) or sets
	// its speed, restarting a running clock's period.
	SetClock(ctx context.Context, meshID string, speed float64) (meshd.Clock, error)
	// PauseClock, ResumeClock and GetClock return meshd.ErrNotFound when
	// the mesh has no clock.
	PauseClock(ctx context.Context, meshID string) (meshd.Clock, error)
	ResumeClock(ctx context.Context, meshID string) (meshd.Clock, error)
	GetClock(ctx context.Context, meshID string) (meshd.Clock, error)
}

type clockStatus struct {
	Type      string  `json:"type"` // "clock_status"
	Speed     float64 `json:"speed"`
	Paused    bool    `json:"paused"`
	Tick      int64   `json:"tick"`
	SimTime   string  `json:"simTime"`
	StartedAt string  `json:"startedAt"`
	ReqID     string  `json:"_reqId,omitempty"`
}

// clockVerb answers set_clock, pause_clock, resume_clock and get_clock
// with clock_status.
func (h *Handler) clockVerb(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	var m struct {
		Type  string          `json:"type"`
		Speed json.RawMessage `json:"speed"`
	}
	if err := decode(data, &m, "clock frame"); err != nil {
		return nil, err
	}
	var (
		clk meshd.Clock
		err error
	)
	switch m.Type {
	case "set_clock":
		clk, err = h.cfg.Store.SetClock(ctx, p.Presence.MeshID, clockSpeed(m.Speed))
	case "pause_clock":
		clk, err = h.cfg.Store.PauseClock(ctx, p.Presence.MeshID)
	case "resume_clock":
		clk, err = h.cfg.Store.ResumeClock(ctx, p.Presence.MeshID)
	default:
		clk, err = h.cfg.Store.GetClock(ctx, p.Presence.MeshID)
	}
	switch {
	case errors.Is(err, meshd.ErrNotFound) && m.Type == "get_clock":
		now := h.cfg.Now()
		clk = meshd.Clock{Paused: true, SimTime: now, StartedAt: now} // B.14.4 defaults
	case errors.Is(err, meshd.ErrNotFound):
		return nil, refuse("no_clock", "No clock running for this mesh")
	case err != nil:
		return nil, fmt.Errorf("%s failed: %w", m.Type, err)
	}
	return clockStatus{Type: "clock_status", ReqID: reqID, Speed: clk.Speed, Paused: clk.Paused, Tick: clk.Tick,
		SimTime: wire.FormatISOTime(clk.SimTime), StartedAt: wire.FormatISOTime(clk.StartedAt)}, nil
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
