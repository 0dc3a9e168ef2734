package verbs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Moderation verbs (docs/protocol.md B.6.10). Closes travel over the
// fan-out (meshd.PresenceControl) to whichever replica holds each socket;
// bans also revoke the member row, so its next hello is refused with 4002
// on every replica.

// ModerationStore backs kick, disconnect, ban, unban and list_bans.
type ModerationStore interface {
	// ListPeers returns the live presences of meshID (grace leases
	// included).
	ListPeers(ctx context.Context, meshID string) ([]meshd.Presence, error)
	MeshMembers(ctx context.Context, meshID string) ([]meshd.Member, error)
	MemberPresences(ctx context.Context, meshID, memberID string) ([]meshd.Presence, error)
	RevokeMember(ctx context.Context, meshID, memberID string) error
	UnrevokeMember(ctx context.Context, meshID, memberID string) error
	Disconnect(ctx context.Context, presenceIDs []string) error
}

// ownerMembers returns the ids of the owner's member rows in p's mesh, or
// nil when p is the owner (nothing to protect from them).
func (h *Handler) ownerMembers(ctx context.Context, p Peer) (map[string]bool, error) {
	mesh := p.Mesh
	if mesh.OwnedBy(p.Member) || mesh.OwnerUserID == "" {
		return nil, nil
	}
	members, err := h.cfg.Store.MeshMembers(ctx, mesh.ID)
	if err != nil {
		return nil, err
	}
	owners := map[string]bool{}
	for _, mb := range members {
		if mesh.OwnedBy(mb) {
			owners[mb.ID] = true
		}
	}
	return owners, nil
}

// forbid is the refusal of verb to a peer that may not moderate, nil when
// it may.
func forbid(p Peer, verb string) error {
	if p.Mesh.CanModerate(p.Member) {
		return nil
	}
	return refuse("forbidden", "only owner or admin can "+verb)
}

type kickRequest struct {
	Target string `json:"target"`
	Stale  *int64 `json:"stale"` // ms since last_ping_at
	All    bool   `json:"all"`
}

func (h *Handler) kick(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	return h.kickOrDisconnect(ctx, p, data, reqID, true)
}

func (h *Handler) disconnect(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	return h.kickOrDisconnect(ctx, p, data, reqID, false)
}

// kickOrDisconnect: kick is hard (4001, presence ended, control-plane
// connections skipped); disconnect is soft (1000, the presence enters its
// grace lease and the client reattaches silently).
func (h *Handler) kickOrDisconnect(ctx context.Context, p Peer, data []byte, reqID string, kick bool) (any, error) {
	verb, ackType := "disconnect", "disconnect_ack"
	if kick {
		verb, ackType = "kick", "kick_ack"
	}
	if err := forbid(p, verb); err != nil {
		return nil, err
	}
	var m kickRequest
	if err := decode(data, &m, verb); err != nil {
		return nil, err
	}
	if m.Target == "" && m.Stale == nil && !m.All {
		return nil, refuse("invalid", "target, stale or all required")
	}
	self := p.Presence
	peers, err := h.cfg.Store.ListPeers(ctx, self.MeshID)
	if err != nil {
		return nil, fmt.Errorf("%s failed: %w", verb, err)
	}
	owners, err := h.ownerMembers(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("%s failed: %w", verb, err)
	}
	reason := kickReason(kick, m.Stale != nil)
	affected, skipped := []string{}, []string{}
	var ended []string
	ownerHit := false
	for _, pr := range peers {
		if pr.ID == self.ID || !matchesKick(pr, m, h.cfg.Now()) {
			continue
		}
		if owners[pr.MemberID] {
			ownerHit = true
			continue
		}
		if kick && pr.Role == meshd.RoleControlPlane {
			skipped = append(skipped, pr.DisplayName)
			continue
		}
		if err := h.closePresence(ctx, pr.ID, reason); err != nil {
			return nil, fmt.Errorf("%s failed: %w", verb, err)
		}
		affected = append(affected, pr.DisplayName)
		ended = append(ended, pr.ID)
	}
	if ownerHit && len(affected) == 0 && len(skipped) == 0 && !m.All && m.Stale == nil {
		return nil, refuse("forbidden", "the mesh owner cannot be "+verb+"ed")
	}
	if kick && len(ended) > 0 {
		if err := h.cfg.Store.Disconnect(ctx, ended); err != nil {
			return nil, fmt.Errorf("kick failed: %w", err)
		}
	}
	res := map[string]any{"type": ackType, "kicked": affected, "affected": affected}
	if kick && len(skipped) > 0 {
		res["skipped_control_plane"] = skipped
	}
	return withReqID(res, reqID), nil
}

// closePresence asks whichever replica holds the presence's socket to
// close it with r.
func (h *Handler) closePresence(ctx context.Context, presenceID string, r wire.Reason) error {
	data, err := json.Marshal(meshd.PresenceControl{Reason: r.Metric()})
	if err != nil {
		return err
	}
	return h.cfg.Publisher.Publish(ctx, meshd.PresenceTopic(presenceID), data)
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
func (h *Handler) findMember(ctx context.Context, meshID, target string, revoked bool) (meshd.Member, bool, error) {
	members, err := h.cfg.Store.MeshMembers(ctx, meshID)
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

func (h *Handler) ban(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	if err := forbid(p, "ban"); err != nil {
		return nil, err
	}
	var m kickRequest
	if err := decode(data, &m, "ban"); err != nil {
		return nil, err
	}
	pres, self := p.Presence, p.Member
	if m.Target == "" {
		return nil, refuse("invalid", "target required")
	}
	target, ok, err := h.findMember(ctx, pres.MeshID, m.Target, false)
	switch {
	case err != nil:
		return nil, fmt.Errorf("ban failed: %w", err)
	case !ok:
		return nil, refuse("not_found", fmt.Sprintf("peer %q not found", m.Target))
	case target.ID == self.ID:
		return nil, refuse("invalid", "cannot ban yourself")
	case p.Mesh.OwnedBy(target) && !p.Mesh.OwnedBy(self):
		return nil, refuse("forbidden", "the mesh owner cannot be banned")
	}
	if err := h.cfg.Store.RevokeMember(ctx, pres.MeshID, target.ID); err != nil {
		return nil, fmt.Errorf("ban failed: %w", err)
	}
	live, err := h.cfg.Store.MemberPresences(ctx, pres.MeshID, target.ID)
	if err != nil {
		return nil, fmt.Errorf("ban failed: %w", err)
	}
	ids := make([]string, 0, len(live))
	for _, lp := range live {
		ids = append(ids, lp.ID)
		if err := h.closePresence(ctx, lp.ID, wire.ReasonBanned); err != nil {
			return nil, fmt.Errorf("ban failed: %w", err)
		}
	}
	if len(ids) > 0 {
		if err := h.cfg.Store.Disconnect(ctx, ids); err != nil {
			return nil, fmt.Errorf("ban failed: %w", err)
		}
	}
	h.cfg.Logger.Info().Str("mesh_id", pres.MeshID).Str("member_id", self.ID).Str("target_member", target.ID).Int("closed", len(ids)).Msg("member banned")
	h.audit(ctx, p, "member_banned", map[string]any{"target": m.Target, "targetPubkey": target.Pubkey})
	return withReqID(map[string]any{"type": "ban_ack", "banned": target.DisplayName}, reqID), nil
}

func (h *Handler) unban(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	if err := forbid(p, "unban"); err != nil {
		return nil, err
	}
	var m kickRequest
	if err := decode(data, &m, "unban"); err != nil {
		return nil, err
	}
	if m.Target == "" {
		return nil, refuse("invalid", "target required")
	}
	target, ok, err := h.findMember(ctx, p.Presence.MeshID, m.Target, true)
	switch {
	case err != nil:
		return nil, fmt.Errorf("unban failed: %w", err)
	case !ok:
		return nil, refuse("not_found", fmt.Sprintf("peer %q not found", m.Target))
	}
	if err := h.cfg.Store.UnrevokeMember(ctx, p.Presence.MeshID, target.ID); err != nil {
		return nil, fmt.Errorf("unban failed: %w", err)
	}
	h.audit(ctx, p, "member_unbanned", map[string]any{"target": m.Target})
	return withReqID(map[string]any{"type": "unban_ack", "unbanned": target.DisplayName}, reqID), nil
}

func (h *Handler) listBans(ctx context.Context, p Peer, _ []byte, reqID string) (any, error) {
	if err := forbid(p, "list_bans"); err != nil {
		return nil, err
	}
	members, err := h.cfg.Store.MeshMembers(ctx, p.Presence.MeshID)
	if err != nil {
		return nil, fmt.Errorf("list_bans failed: %w", err)
	}
	bans := []map[string]any{}
	for _, mb := range members {
		if mb.RevokedAt != nil {
			bans = append(bans, map[string]any{"name": mb.DisplayName, "pubkey": mb.Pubkey, "revokedAt": wire.FormatISOTime(*mb.RevokedAt)})
		}
	}
	return withReqID(map[string]any{"type": "list_bans_result", "bans": bans}, reqID), nil
}
