package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	req.Privileged = mesh.CanModerate(member)
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

// Bounds on what a member stores for others to read (issue 12 item 8).
const (
	maxDisplayNameChars = 100  // hello/session_hello displayName, in characters
	maxSummaryBytes     = 4096 // set_summary
)

// verbBurstFactor: a client sets its summary, profile and several groups
// right after hello, so the presence-verb bucket holds this many times
// SEND_RATE_BURST; it refills at SEND_RATE_PER_MIN like sends.
const verbBurstFactor = 3

// verbLimited spends one token of the member's presence-verb bucket (a
// bucket of its own, sized like the send bucket: verbBurstFactor ×
// SEND_RATE_BURST, refilled at SEND_RATE_PER_MIN) and,
// when it is empty, answers error rate_limited and reports true.
func (s *Server) verbLimited(c *conn, verb, reqID string) bool {
	_, member, _ := c.snapshot()
	if s.verbRL.Take(member.ID, s.cfg.Now()) {
		return false
	}
	s.met.messagesRejected.WithLabelValues("rate_limit").Inc()
	c.sendError("rate_limited", fmt.Sprintf("%s: rate_limit: max %g updates/min (burst %g) — slow down", verb, s.cfg.SendPerMinute, verbBurstFactor*s.cfg.SendBurst), reqID)
	return true
}

// errInvalidTarget answers a send to "@" or "@@…": a group target must
// name a group (issue 12 item 8).
const errInvalidTarget = "invalid_target: @ must be followed by a group name"

func badGroupTarget(target string) bool {
	return target == "@" || strings.HasPrefix(target, "@@")
}
