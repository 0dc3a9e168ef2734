package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Presence and status verbs (docs/protocol.md B.6.7). Each changes the shared
// presence row first (so every replica's list_peers and drains see it) and
// then this socket's copy.

func decode(data []byte, v any, what string) error {
	if err := json.Unmarshal(data, v); err != nil {
		return invalid("invalid %s: %v", what, err)
	}
	return nil
}

// handleSetStatus writes with source manual; no reply, no drain (B.6.7).
// A manual dnd is then never changed by hooks, the TTL sweep or JSONL.
func (s *Server) handleSetStatus(ctx context.Context, c *conn, data []byte, reqID string) error {
	if s.verbLimited(c, "set_status", reqID) {
		return nil
	}
	var m struct {
		Status meshd.Status `json:"status"`
	}
	if err := decode(data, &m, "set_status"); err != nil {
		return err
	}
	if !m.Status.Valid() {
		return invalid("set_status: status must be idle, working or dnd (got %q)", truncate(string(m.Status), 16))
	}
	pres, _, _ := c.snapshot()
	if _, err := s.cfg.Store.WriteStatus(ctx, pres.ID, m.Status, meshd.SourceManual, s.cfg.HookFreshWindow); err != nil {
		return fmt.Errorf("set_status failed: %w", err)
	}
	c.mu.Lock()
	c.pres.Status, c.pres.StatusSource = m.Status, meshd.SourceManual
	c.mu.Unlock()
	return nil
}

func (s *Server) handleSetSummary(ctx context.Context, c *conn, data []byte, reqID string) error {
	if s.verbLimited(c, "set_summary", reqID) {
		return nil
	}
	var m struct {
		Summary *string `json:"summary"`
	}
	if err := decode(data, &m, "set_summary"); err != nil {
		return err
	}
	if m.Summary == nil {
		return invalid("set_summary: summary required")
	}
	if len(*m.Summary) > maxSummaryBytes {
		return invalid("set_summary: summary longer than %d bytes", maxSummaryBytes)
	}
	pres, _, _ := c.snapshot()
	if err := s.cfg.Store.SetPresenceSummary(ctx, pres.ID, *m.Summary); err != nil {
		return fmt.Errorf("set_summary failed: %w", err)
	}
	c.mu.Lock()
	c.pres.Summary = *m.Summary
	c.mu.Unlock()
	return nil
}

// verbAck is the ack set_visible and set_profile answer with (B.6.7).
func verbAck(reqID string) wire.Ack {
	return wire.Ack{Type: wire.TypeAck, ID: reqID, MessageID: "", Queued: false, ReqID: reqID}
}

func (s *Server) handleSetVisible(ctx context.Context, c *conn, data []byte, reqID string) error {
	if s.verbLimited(c, "set_visible", reqID) {
		return nil
	}
	var m struct {
		Visible *bool `json:"visible"`
	}
	if err := decode(data, &m, "set_visible"); err != nil {
		return err
	}
	if m.Visible == nil {
		return invalid("set_visible: visible (boolean) required")
	}
	pres, _, _ := c.snapshot()
	if err := s.cfg.Store.SetPresenceVisible(ctx, pres.ID, *m.Visible); err != nil {
		return fmt.Errorf("set_visible failed: %w", err)
	}
	c.mu.Lock()
	c.pres.Visible = *m.Visible
	c.mu.Unlock()
	c.send(verbAck(reqID))
	event := "peer_hidden"
	if *m.Visible {
		event = "peer_visible"
	}
	ev := wire.SystemEvent{Name: pres.DisplayName, DisplayName: pres.DisplayName, Pubkey: pres.RoutingPubkey(), Groups: pres.Groups, PeerType: pres.PeerType}
	return s.publishSystem(ctx, pres.MeshID, event, ev, "", pres.ID)
}

func (s *Server) handleSetProfile(ctx context.Context, c *conn, data []byte, reqID string) error {
	if s.verbLimited(c, "set_profile", reqID) {
		return nil
	}
	var m struct {
		Avatar       *string  `json:"avatar,omitempty"`
		Title        *string  `json:"title,omitempty"`
		Bio          *string  `json:"bio,omitempty"`
		Capabilities []string `json:"capabilities,omitempty"`
	}
	if err := decode(data, &m, "set_profile"); err != nil {
		return err
	}
	profile, err := json.Marshal(m)
	if err != nil {
		return err
	}
	pres, _, _ := c.snapshot()
	if err := s.cfg.Store.SetPresenceProfile(ctx, pres.ID, profile); err != nil {
		return fmt.Errorf("set_profile failed: %w", err)
	}
	c.mu.Lock()
	c.pres.Profile = profile
	c.mu.Unlock()
	c.send(verbAck(reqID))
	return nil
}

func (s *Server) handleJoinGroup(ctx context.Context, c *conn, data []byte, reqID string) error {
	if s.verbLimited(c, "join_group", reqID) {
		return nil
	}
	var g meshd.Group
	if err := decode(data, &g, "join_group"); err != nil {
		return err
	}
	if err := validGroupName(g.Name); err != nil {
		return invalid("join_group: %v", err)
	}
	return s.editGroups(ctx, c, func(gs []meshd.Group) []meshd.Group {
		for i := range gs {
			if gs[i].Name == g.Name {
				gs[i].Role = g.Role
				return gs
			}
		}
		return append(gs, meshd.Group{Name: g.Name, Role: g.Role})
	})
}

func (s *Server) handleLeaveGroup(ctx context.Context, c *conn, data []byte, reqID string) error {
	if s.verbLimited(c, "leave_group", reqID) {
		return nil
	}
	var g meshd.Group
	if err := decode(data, &g, "leave_group"); err != nil {
		return err
	}
	if g.Name == "" {
		return invalid("leave_group: name required")
	}
	return s.editGroups(ctx, c, func(gs []meshd.Group) []meshd.Group {
		out := gs[:0]
		for _, x := range gs {
			if x.Name != g.Name {
				out = append(out, x)
			}
		}
		return out
	})
}

// editGroups applies edit to a copy of this socket's groups and stores it.
// Only this socket's read loop edits its groups, so there is no lost update.
func (s *Server) editGroups(ctx context.Context, c *conn, edit func([]meshd.Group) []meshd.Group) error {
	pres, _, _ := c.snapshot()
	groups := edit(append([]meshd.Group(nil), pres.Groups...))
	if err := s.cfg.Store.SetPresenceGroups(ctx, pres.ID, groups); err != nil {
		return fmt.Errorf("update groups failed: %w", err)
	}
	c.mu.Lock()
	c.pres.Groups = groups
	c.mu.Unlock()
	c.wake() // a new group may make held @group rows claimable
	return nil
}

func validGroupName(name string) error {
	switch {
	case name == "":
		return invalid("name required")
	case len(name) > 128:
		return invalid("name longer than 128 bytes")
	case strings.ContainsAny(name, " \t\n@*#"):
		return invalid("name must not contain spaces, @, * or #")
	}
	return nil
}

// restoreInto applies a member's saved peer_state to a new hello presence
// (B.2 "On success" 2-3) and fills the restored hello_ack fields.
func restoreInto(p *meshd.Presence, ack *wire.HelloAck, ps meshd.PeerState, helloGroups []meshd.Group) {
	ack.Restored = true
	ack.LastSummary = ps.LastSummary
	ack.RestoredStats = ps.Stats
	if ps.LastSeenAt != nil {
		ack.LastSeenAt = isoTime(*ps.LastSeenAt)
	}
	if len(helloGroups) == 0 {
		ack.RestoredGroups = ps.Groups
	}
	p.Visible = ps.Visible
	if len(ps.Profile) > 0 && !bytes.Equal(ps.Profile, []byte("{}")) {
		p.Profile = ps.Profile
	}
}
