package broker

import (
	"context"
	"errors"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// attachPresence runs the per-member hello rate limit and Store.Attach with
// the caps of A.3-22, maps cap failures to their rejections and announces
// the grace leases evicted to make room. ok is false once the socket has
// been rejected.
//
// The rate limit runs here, after the signature and replay checks, so an
// outsider cannot spend a member's hello budget with forged hellos.
func (s *Server) attachPresence(ctx context.Context, c *conn, req meshd.AttachRequest, mesh meshd.Mesh, member meshd.Member) (meshd.AttachResult, bool) {
	if !s.helloRL.Take(mesh.ID+"/"+member.ID, s.cfg.Now()) {
		c.reject(wire.ReasonHelloRateLimited, "")
		return meshd.AttachResult{}, false
	}
	req.MaxPerMember = s.cfg.MaxConnectionsPerMember
	req.Privileged = canModerate(mesh, member)
	res, err := s.cfg.Store.Attach(ctx, req)
	switch {
	case errors.Is(err, meshd.ErrCapacity):
		c.reject(wire.ReasonCapacity, "")
		return res, false
	case errors.Is(err, meshd.ErrMemberCapacity):
		c.reject(wire.ReasonMemberCapacity, "")
		return res, false
	case errors.Is(err, meshd.ErrMeshArchived):
		c.reject(wire.ReasonMeshArchived, "")
		return res, false
	case err != nil:
		s.internalError(c, err, "attach presence")
		return res, false
	}
	for _, p := range res.Evicted {
		c.logger().Info().Str("mesh_id", p.MeshID).Str("presence_id", p.ID).Msg("grace lease evicted to make room")
		ev := wire.SystemEvent{Name: p.DisplayName, DisplayName: p.DisplayName, Pubkey: p.RoutingPubkey(), Groups: p.Groups, PeerType: p.PeerType}
		if err := s.publishSystem(ctx, p.MeshID, "peer_left", ev, p.MemberPubkey, ""); err != nil {
			c.logger().Warn().Err(err).Msg("publish peer_left")
		}
		s.audit(ctx, p.MeshID, "peer_left", p.MemberID, p.DisplayName, map[string]any{"reason": "evicted"})
	}
	return res, true
}

// closeMesh closes every socket of meshID on this replica with 4003
// mesh_archived (A.3-23). Their presences were ended by the archive.
func (s *Server) closeMesh(meshID string) {
	r := wire.ReasonMeshArchived
	for _, c := range s.hub.meshConns(meshID) {
		if !c.closing.Load() {
			c.send(r.ErrorFrame(""))
		}
		c.close(r, "")
	}
}

// closeArchivedMeshes is the fallback of closeMesh for a replica that missed
// the fan-out message: it asks which of its meshes are archived.
func (s *Server) closeArchivedMeshes(ctx context.Context) {
	local := s.hub.localMeshes()
	if len(local) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	gone, err := s.cfg.Store.ArchivedMeshes(cctx, local)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("archived mesh check")
		}
		return
	}
	for _, id := range gone {
		s.closeMesh(id)
	}
}
