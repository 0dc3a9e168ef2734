package verbs

import (
	"context"
	"fmt"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// handleListPeers answers list_peers from Postgres, so peers on every
// replica appear (B.6.8). Invisible peers are omitted unless they belong to
// the requester's member.
func (h *Handler) listPeers(ctx context.Context, p Peer, _ []byte, reqID string) (any, error) {
	rows, err := h.cfg.Store.ListPeers(ctx, p.Presence.MeshID)
	if err != nil {
		return nil, fmt.Errorf("list peers failed: %w", err)
	}
	out := wire.PeersList{Type: wire.TypePeersList, Peers: make([]wire.Peer, 0, len(rows)), ReqID: reqID}
	for _, pr := range rows {
		if !pr.Visible && pr.MemberID != p.Member.ID {
			continue
		}
		out.Peers = append(out.Peers, peerOf(pr))
	}
	return out, nil
}

func peerOf(p meshd.Presence) wire.Peer {
	wp := wire.Peer{
		Pubkey: p.RoutingPubkey(), MemberPubkey: p.MemberPubkey, DisplayName: p.DisplayName,
		Status: string(p.Status), Groups: p.Groups, SessionID: p.SessionID,
		ConnectedAt: wire.FormatISOTime(p.ConnectedAt), CWD: p.CWD, PeerRole: p.Role,
		Hostname: p.Hostname, PeerType: p.PeerType, Channel: p.Channel, Model: p.Model,
	}
	if p.Summary != "" {
		sum := p.Summary
		wp.Summary = &sum
	}
	if wp.Groups == nil {
		wp.Groups = []meshd.Group{}
	}
	vis := p.Visible
	wp.Visible = &vis
	if len(p.Profile) > 0 && string(p.Profile) != "{}" && string(p.Profile) != "null" {
		wp.Profile = p.Profile
	}
	return wp
}
