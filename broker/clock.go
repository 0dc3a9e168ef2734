package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd"
)

// Mesh clocks (docs/protocol.md B.14.4) with one owner cluster-wide. Upstream
// keeps each clock in one process's memory with a setInterval, so two
// replicas would both tick. Here the clock is a row in Postgres, the verbs
// change it from any replica, and one leader-run job (RunClocks) advances
// due clocks with one atomic UPDATE and pushes the tick to the whole mesh
// over the fanout: one tick per period, on every replica's sockets.

const (
	// clockPollMax bounds how late the first tick of a clock set on another
	// replica comes (the fastest period is 600 ms, at speed 100).
	clockPollMax = 250 * time.Millisecond
	clockPollMin = 10 * time.Millisecond
	// idleClockCheck is how often the job pauses clocks of meshes with no
	// live presence left.
	idleClockCheck = 2 * time.Second
)

type clockStatus struct {
	Type      string  `json:"type"` // "clock_status"
	Speed     float64 `json:"speed"`
	Paused    bool    `json:"paused"`
	Tick      int64   `json:"tick"`
	SimTime   string  `json:"simTime"`
	StartedAt string  `json:"startedAt"`
	ReqID     string  `json:"_reqId,omitempty"`
}

// tickEvent is the eventData of the tick system push (B.4.3).
type tickEvent struct {
	Tick    int64   `json:"tick"`
	SimTime string  `json:"simTime"`
	Speed   float64 `json:"speed"`
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
	st := clockStatus{Type: "clock_status", ReqID: reqID}
	fill := func(speed float64, paused bool, tick int64, simTime, startedAt time.Time) {
		st.Speed, st.Paused, st.Tick = speed, paused, tick
		st.SimTime, st.StartedAt = isoTime(simTime), isoTime(startedAt)
	}
	var err error
	switch m.Type {
	case "set_clock":
		err = s.cfg.Store.SetClock(ctx, pres.MeshID, clockSpeed(m.Speed), fill)
	case "pause_clock":
		err = s.cfg.Store.PauseClock(ctx, pres.MeshID, fill)
	case "resume_clock":
		err = s.cfg.Store.ResumeClock(ctx, pres.MeshID, fill)
	default:
		err = s.cfg.Store.GetClock(ctx, pres.MeshID, fill)
	}
	switch {
	case errors.Is(err, meshd.ErrNotFound) && m.Type == "get_clock":
		now := s.cfg.Now()
		fill(0, true, 0, now, now) // B.14.4 defaults
	case errors.Is(err, meshd.ErrNotFound):
		c.sendError("no_clock", "No clock running for this mesh", reqID)
		return nil
	case err != nil:
		return fmt.Errorf("%s failed: %w", m.Type, err)
	}
	c.send(st)
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

// RunClocks advances mesh clocks until ctx ends. It must run under
// leadership (cmd/meshd wires an ha.Leader around it); a second instance
// running meanwhile cannot make a period tick twice. It also pauses the
// clocks of meshes whose last presence is gone (B.14.4 auto-pause).
func (s *Server) RunClocks(ctx context.Context) {
	var lastIdle time.Time
	for {
		if time.Since(lastIdle) >= idleClockCheck {
			lastIdle = time.Now()
			s.pauseIdleClocks(ctx)
		}
		s.AdvanceClocks(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.nextClockWait(ctx)):
		}
	}
}

// AdvanceClocks runs one pass of the clock job: every due clock ticks once
// and its mesh gets the tick push. Returns the number of ticks.
func (s *Server) AdvanceClocks(ctx context.Context) int {
	n, err := s.cfg.Store.AdvanceClocks(ctx, func(meshID string, tick int64, simTime time.Time, speed float64) {
		if err := s.publishTick(ctx, meshID, tick, simTime, speed); err != nil {
			s.log.Warn().Err(err).Str("mesh_id", meshID).Msg("publish tick")
		}
	})
	if err != nil && ctx.Err() == nil {
		s.log.Warn().Err(err).Msg("advance clocks")
	}
	return n
}

// publishTick sends the B.4.3 system push tick {tick, simTime, speed}
// (priority low) to every socket of the mesh on every replica. It is
// publishSystem with tick's own eventData shape.
func (s *Server) publishTick(ctx context.Context, meshID string, tick int64, simTime time.Time, speed float64) error {
	raw, err := json.Marshal(tickEvent{Tick: tick, SimTime: isoTime(simTime), Speed: speed})
	if err != nil {
		return err
	}
	return s.publishMesh(ctx, meshID, meshEventMsg{Kind: kindSystem, Push: systemPush(meshID, "tick", raw, s.cfg.Now())})
}

func (s *Server) pauseIdleClocks(ctx context.Context) {
	n, err := s.cfg.Store.PauseIdleClocks(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		s.log.Warn().Err(err).Msg("pause idle clocks")
	case n > 0:
		s.log.Info().Int64("clocks", n).Msg("paused clocks of meshes with no live presence")
	}
}

func (s *Server) nextClockWait(ctx context.Context) time.Duration {
	d, ok, err := s.cfg.Store.NextClockTickIn(ctx)
	if err != nil || !ok {
		return clockPollMax
	}
	return min(max(d, clockPollMin), clockPollMax)
}
