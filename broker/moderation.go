package broker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Moderation verbs (docs/protocol.md B.6.10). Closes travel over the fanout to
// whichever replica holds each socket; bans also revoke the member row, so
// its next hello is refused with 4002 on every replica.

// canModerate is B.6.10's authz: the mesh owner or an admin member.
func canModerate(mesh meshd.Mesh, member meshd.Member) bool {
	return member.Role == "admin" || (mesh.OwnerUserID != "" && mesh.OwnerUserID == member.UserID)
}

// isOwner reports whether member is the mesh owner's (issue 12 item 3: an
// admin can neither ban, kick nor disconnect the owner).
func isOwner(mesh meshd.Mesh, member meshd.Member) bool {
	return mesh.OwnerUserID != "" && mesh.OwnerUserID == member.UserID
}

// ownerMembers returns the ids of the owner's member rows in meshID, or nil
// when the actor is the owner (nothing to protect from them).
func (s *Server) ownerMembers(ctx context.Context, c *conn) (map[string]bool, error) {
	mesh := c.meshOf()
	if _, self, _ := c.snapshot(); isOwner(mesh, self) || mesh.OwnerUserID == "" {
		return nil, nil
	}
	members, err := s.cfg.Store.MeshMembers(ctx, mesh.ID)
	if err != nil {
		return nil, err
	}
	owners := map[string]bool{}
	for _, mb := range members {
		if isOwner(mesh, mb) {
			owners[mb.ID] = true
		}
	}
	return owners, nil
}

func (c *conn) meshOf() meshd.Mesh {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mesh
}

func (s *Server) forbid(c *conn, verb, reqID string) bool {
	_, member, _ := c.snapshot()
	if canModerate(c.meshOf(), member) {
		return false
	}
	c.sendError("forbidden", "only owner or admin can "+verb, reqID)
	return true
}

type kickRequest struct {
	Target string `json:"target"`
	Stale  *int64 `json:"stale"` // ms since last_ping_at
	All    bool   `json:"all"`
}

func (s *Server) handleKick(ctx context.Context, c *conn, data []byte, reqID string) error {
	return s.kickOrDisconnect(ctx, c, data, reqID, true)
}

func (s *Server) handleDisconnect(ctx context.Context, c *conn, data []byte, reqID string) error {
	return s.kickOrDisconnect(ctx, c, data, reqID, false)
}

// kickOrDisconnect: kick is hard (4001, presence ended, control-plane
// connections skipped); disconnect is soft (1000, the presence enters its
// grace lease and the client reattaches silently).
func (s *Server) kickOrDisconnect(ctx context.Context, c *conn, data []byte, reqID string, kick bool) error {
	verb, ackType := "disconnect", "disconnect_ack"
	if kick {
		verb, ackType = "kick", "kick_ack"
	}
	if s.forbid(c, verb, reqID) {
		return nil
	}
	var m kickRequest
	if err := decode(data, &m, verb); err != nil {
		return err
	}
	if m.Target == "" && m.Stale == nil && !m.All {
		c.sendError("invalid", "target, stale or all required", reqID)
		return nil
	}
	self, _, _ := c.snapshot()
	peers, err := s.cfg.Store.ListPeers(ctx, self.MeshID)
	if err != nil {
		return fmt.Errorf("%s failed: %w", verb, err)
	}
	owners, err := s.ownerMembers(ctx, c)
	if err != nil {
		return fmt.Errorf("%s failed: %w", verb, err)
	}
	reason := kickReason(kick, m.Stale != nil)
	affected, skipped := []string{}, []string{}
	var ended []string
	ownerHit := false
	for _, p := range peers {
		if p.ID == self.ID || !matchesKick(p, m, s.cfg.Now()) {
			continue
		}
		if owners[p.MemberID] {
			ownerHit = true
			continue
		}
		if kick && p.Role == meshd.RoleControlPlane {
			skipped = append(skipped, p.DisplayName)
			continue
		}
		if err := s.closePresence(ctx, p.ID, "", reason); err != nil {
			return fmt.Errorf("%s failed: %w", verb, err)
		}
		affected = append(affected, p.DisplayName)
		ended = append(ended, p.ID)
	}
	if ownerHit && len(affected) == 0 && len(skipped) == 0 && !m.All && m.Stale == nil {
		c.sendError("forbidden", "the mesh owner cannot be "+verb+"ed", reqID)
		return nil
	}
	if kick && len(ended) > 0 {
		if err := s.cfg.Store.Disconnect(ctx, ended); err != nil {
			return fmt.Errorf("kick failed: %w", err)
		}
	}
	res := map[string]any{"type": ackType, "kicked": affected, "affected": affected}
	if kick && len(skipped) > 0 {
		res["skipped_control_plane"] = skipped
	}
	if reqID != "" {
		res["_reqId"] = reqID
	}
	c.send(res)
	return nil
}

func kickReason(kick, stale bool) wire.Reason {
	switch {
	case kick && stale:
		return wire.ReasonKickedStale
	case kick:
		return wire.ReasonKicked
	case stale:
		return wire.ReasonDisconnectedStale
	}
	return wire.ReasonDisconnected
}

// matchesKick: all, stale (no ping for that many ms), or target = display
// name, member pubkey or a member-pubkey prefix.
func matchesKick(p meshd.Presence, m kickRequest, now time.Time) bool {
	switch {
	case m.All:
		return true
	case m.Stale != nil:
		return now.Sub(p.LastPingAt) >= time.Duration(*m.Stale)*time.Millisecond
	}
	return matchesTarget(p.DisplayName, p.MemberPubkey, m.Target)
}

func matchesTarget(name, pubkey, target string) bool {
	if target == "" {
		return false
	}
	return name == target || pubkey == target || (len(target) >= 4 && strings.HasPrefix(pubkey, strings.ToLower(target)))
}

// findMember resolves a ban/unban target among the mesh's members.
func (s *Server) findMember(ctx context.Context, meshID, target string, revoked bool) (meshd.Member, bool, error) {
	members, err := s.cfg.Store.MeshMembers(ctx, meshID)
	if err != nil {
		return meshd.Member{}, false, err
	}
	for _, mb := range members {
		if (mb.RevokedAt != nil) == revoked && matchesTarget(mb.DisplayName, mb.Pubkey, target) {
			return mb, true, nil
		}
	}
	return meshd.Member{}, false, nil
}

func (s *Server) handleBan(ctx context.Context, c *conn, data []byte, reqID string) error {
	if s.forbid(c, "ban", reqID) {
		return nil
	}
	var m kickRequest
	if err := decode(data, &m, "ban"); err != nil {
		return err
	}
	pres, self, _ := c.snapshot()
	if m.Target == "" {
		c.sendError("invalid", "target required", reqID)
		return nil
	}
	target, ok, err := s.findMember(ctx, pres.MeshID, m.Target, false)
	if err != nil {
		return fmt.Errorf("ban failed: %w", err)
	}
	if !ok {
		c.sendError("not_found", fmt.Sprintf("peer %q not found", m.Target), reqID)
		return nil
	}
	if target.ID == self.ID {
		c.sendError("invalid", "cannot ban yourself", reqID)
		return nil
	}
	if mesh := c.meshOf(); isOwner(mesh, target) && !isOwner(mesh, self) {
		c.sendError("forbidden", "the mesh owner cannot be banned", reqID)
		return nil
	}
	if err := s.cfg.Store.RevokeMember(ctx, pres.MeshID, target.ID); err != nil {
		return fmt.Errorf("ban failed: %w", err)
	}
	live, err := s.cfg.Store.MemberPresences(ctx, pres.MeshID, target.ID)
	if err != nil {
		return fmt.Errorf("ban failed: %w", err)
	}
	ids := make([]string, 0, len(live))
	for _, p := range live {
		ids = append(ids, p.ID)
		if err := s.closePresence(ctx, p.ID, "", wire.ReasonBanned); err != nil {
			return fmt.Errorf("ban failed: %w", err)
		}
	}
	if len(ids) > 0 {
		if err := s.cfg.Store.Disconnect(ctx, ids); err != nil {
			return fmt.Errorf("ban failed: %w", err)
		}
	}
	c.logger().Info().Str("target_member", target.ID).Int("closed", len(ids)).Msg("member banned")
	s.audit(ctx, pres.MeshID, "member_banned", self.ID, pres.DisplayName, map[string]any{"target": m.Target, "targetPubkey": target.Pubkey})
	c.send(withReq(map[string]any{"type": "ban_ack", "banned": target.DisplayName}, reqID))
	return nil
}

func (s *Server) handleUnban(ctx context.Context, c *conn, data []byte, reqID string) error {
	if s.forbid(c, "unban", reqID) {
		return nil
	}
	var m kickRequest
	if err := decode(data, &m, "unban"); err != nil {
		return err
	}
	pres, _, _ := c.snapshot()
	if m.Target == "" {
		c.sendError("invalid", "target required", reqID)
		return nil
	}
	target, ok, err := s.findMember(ctx, pres.MeshID, m.Target, true)
	if err != nil {
		return fmt.Errorf("unban failed: %w", err)
	}
	if !ok {
		c.sendError("not_found", fmt.Sprintf("peer %q not found", m.Target), reqID)
		return nil
	}
	if err := s.cfg.Store.UnrevokeMember(ctx, pres.MeshID, target.ID); err != nil {
		return fmt.Errorf("unban failed: %w", err)
	}
	_, self, _ := c.snapshot()
	s.audit(ctx, pres.MeshID, "member_unbanned", self.ID, pres.DisplayName, map[string]any{"target": m.Target})
	c.send(withReq(map[string]any{"type": "unban_ack", "unbanned": target.DisplayName}, reqID))
	return nil
}

func (s *Server) handleListBans(ctx context.Context, c *conn, _ []byte, reqID string) error {
	if s.forbid(c, "list_bans", reqID) {
		return nil
	}
	pres, _, _ := c.snapshot()
	members, err := s.cfg.Store.MeshMembers(ctx, pres.MeshID)
	if err != nil {
		return fmt.Errorf("list_bans failed: %w", err)
	}
	bans := []map[string]any{}
	for _, mb := range members {
		if mb.RevokedAt != nil {
			bans = append(bans, map[string]any{"name": mb.DisplayName, "pubkey": mb.Pubkey, "revokedAt": isoTime(*mb.RevokedAt)})
		}
	}
	c.send(withReq(map[string]any{"type": "list_bans_result", "bans": bans}, reqID))
	return nil
}

func withReq(m map[string]any, reqID string) map[string]any {
	if reqID != "" {
		m["_reqId"] = reqID
	}
	return m
}
