package broker

import (
	"context"

	"github.com/meshd/meshd/collab"
)

// The 66 collaboration request types (topics, memory, tasks, contexts,
// skills, mesh_info and the typed fallbacks of the unsupported groups) are
// answered by package collab (docs/protocol.md Part C). The broker owns the
// socket side: it builds the collab.Peer from the connection, lends collab
// its mesh publish (share_context's state_change), and writes the replies.

// newCollab builds the handler from cfg.CollabStore; nil when unset, so the
// 66 types then answer unknown_message_type as any unknown type does.
func (s *Server) newCollab() (*collab.Handler, error) {
	if s.cfg.CollabStore == nil {
		return nil, nil
	}
	return collab.New(collab.Config{Store: s.cfg.CollabStore, Publisher: collabPublisher{s}, Logger: s.log,
		PublicURL: s.cfg.PublicURL})
}

// collabPublisher is collab's Publisher over the broker's mesh fan-out.
type collabPublisher struct{ s *Server }

func (p collabPublisher) PublishMesh(ctx context.Context, meshID string, frame any, excludePresenceID string) error {
	return p.s.publishFrame(ctx, meshID, frame, excludePresenceID)
}

// collabPeer is who sent a frame, as collab sees it.
func collabPeer(c *conn) collab.Peer {
	pres, member, _ := c.snapshot()
	return collab.Peer{
		MeshID: pres.MeshID, MemberID: member.ID, MemberPubkey: member.Pubkey,
		SessionPubkey: pres.SessionPubkey, PresenceID: pres.ID,
		MemberName: member.DisplayName, DisplayName: pres.DisplayName,
		Admin: member.Role == "admin", Groups: pres.Groups,
	}
}

// handleCollab answers an authenticated frame of one of the 66 types and
// reports whether it did (false: not a collab type, or collab not wired).
func (s *Server) handleCollab(ctx context.Context, c *conn, typ string, data []byte) bool {
	if s.collab == nil {
		return false
	}
	replies, ok := s.collab.Handle(ctx, collabPeer(c), typ, data)
	if !ok {
		return false
	}
	for _, r := range replies { // recall answers two frames
		c.send(r)
	}
	return true
}
