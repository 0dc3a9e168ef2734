package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/olahol/melody"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// handleHello runs the member-key handshake: every check in the order of
// docs/protocol.md B.2, plus A.3-10 (memberId must match the member found).
func (s *Server) handleHello(ctx context.Context, c *conn, data []byte) {
	var h wire.Hello
	if err := json.Unmarshal(data, &h); err != nil {
		s.invalidHello(c, "invalid hello: "+err.Error())
		return
	}
	if r := wire.CheckSessionPubkeyShape(h.SessionPubkey, false); r != wire.OK {
		c.reject(r, "")
		return
	}
	if !s.underCapacity(ctx, c, h.MeshID, h.Pubkey, h.SessionPubkey, h.SessionID) {
		return
	}
	if r := wire.CheckHelloSignature(&h, s.cfg.Now()); r != wire.OK {
		c.reject(r, "")
		return
	}
	if !s.firstUse(ctx, c, h.Signature) {
		return
	}
	mesh, member, ok := s.lookupMember(ctx, c, h.MeshID, h.Pubkey, wire.ReasonUnauthorized)
	if !ok {
		return
	}
	if h.MemberID != member.ID {
		c.reject(wire.ReasonUnauthorized, "")
		return
	}
	p, ok := s.newPresence(c, "hello", mesh, member, h.SessionPubkey, &h.PeerInfo)
	if !ok {
		return
	}
	p.Role = meshd.RoleControlPlane
	p.Ephemeral = ephemeralHello(h.Capabilities)
	opts := attachOpts{caps: h.Capabilities}
	ps, err := s.cfg.Store.LoadPeerState(ctx, mesh.ID, member.ID)
	switch {
	case err == nil:
		opts.restored = &ps
		p.Groups = firstNonEmpty(h.Groups, firstNonEmpty(ps.Groups, member.DefaultGroups))
	case errors.Is(err, meshd.ErrNotFound):
		p.Groups = firstNonEmpty(h.Groups, member.DefaultGroups)
	default:
		s.internalError(c, err, "peer state lookup")
		return
	}
	opts.helloGroups = h.Groups
	s.attach(ctx, c, meshd.AttachRequest{Presence: p}, mesh, member, opts)
}

// handleSessionHello runs the per-session handshake in the order of B.3.
func (s *Server) handleSessionHello(ctx context.Context, c *conn, data []byte) {
	var h wire.SessionHello
	if err := json.Unmarshal(data, &h); err != nil {
		s.invalidHello(c, "invalid session_hello: "+err.Error())
		return
	}
	if r := wire.CheckSessionPubkeyShape(h.SessionPubkey, true); r != wire.OK {
		c.reject(r, "")
		return
	}
	att, r := wire.ParseAttestation(&h)
	if r != wire.OK {
		c.reject(r, "")
		return
	}
	if !s.underCapacity(ctx, c, h.MeshID, h.ParentMemberPubkey, h.SessionPubkey, h.SessionID) {
		return
	}
	now := s.cfg.Now()
	if r := wire.VerifyAttestation(att, now); r != wire.OK {
		c.reject(r, "")
		return
	}
	if r := wire.CheckSessionHelloSignature(&h, now); r != wire.OK {
		c.reject(r, "")
		return
	}
	if !s.firstUse(ctx, c, h.Signature) {
		return
	}
	mesh, member, ok := s.lookupMember(ctx, c, h.MeshID, h.ParentMemberPubkey, wire.ReasonParentUnauthorized)
	if !ok {
		return
	}
	if h.ParentMemberID != "" && h.ParentMemberID != member.ID {
		c.reject(wire.ReasonParentMemberIDMismatch, "")
		return
	}
	p, ok := s.newPresence(c, "session_hello", mesh, member, h.SessionPubkey, &h.PeerInfo)
	if !ok {
		return
	}
	p.Role = meshd.RoleSession
	// B.3: hello groups (even an empty array) ?? member default groups.
	p.Groups = h.Groups
	if h.Groups == nil {
		p.Groups = member.DefaultGroups
	}
	s.attach(ctx, c, meshd.AttachRequest{Presence: p, TakeOverOnline: true}, mesh, member, attachOpts{caps: h.Capabilities, session: true})
}

func (s *Server) invalidHello(c *conn, msg string) {
	s.met.messagesRejected.WithLabelValues("parse_or_handler").Inc()
	c.sendError("invalid_message", msg, "")
}

// underCapacity is check B.2-2/B.3-4 against the presences of every replica
// (A.3-7). Attach re-checks under a per-mesh lock, so the cap is exact.
// Grace leases count toward the cap, so a full mesh would lock a member out
// of its own lease for 90 s; a hello claiming an identity that has a lease
// goes on to the signature checks instead (a forger then fails those).
func (s *Server) underCapacity(ctx context.Context, c *conn, meshID, memberPubkey, sessionPubkey, sessionID string) bool {
	n, err := s.cfg.Store.CountLive(ctx, meshID)
	if err != nil {
		s.internalError(c, err, "count presences")
		return false
	}
	if n >= s.cfg.MaxConnectionsPerMesh {
		if ok, err := s.cfg.Store.CapacityExempt(ctx, meshID, memberPubkey, sessionPubkey, sessionID); err == nil && ok {
			return true
		}
		c.logger().Warn().Str("mesh_id", meshID).Int("existing", n).Int("cap", s.cfg.MaxConnectionsPerMesh).Msg("mesh at capacity")
		c.reject(wire.ReasonCapacity, "")
		return false
	}
	return true
}

// lookupMember is check B.2-4/B.3-7: revoked → 4002, missing → notFound.
func (s *Server) lookupMember(ctx context.Context, c *conn, meshID, pubkey string, notFound wire.Reason) (meshd.Mesh, meshd.Member, bool) {
	mesh, member, err := s.cfg.Store.LookupMember(ctx, meshID, pubkey)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		c.reject(notFound, "")
		return mesh, member, false
	case err != nil:
		s.internalError(c, err, "member lookup")
		return mesh, member, false
	case member.RevokedAt != nil:
		c.reject(wire.ReasonRevoked, mesh.Label())
		return mesh, member, false
	}
	return mesh, member, true
}

// internalError answers a handshake that failed on our side (database down):
// an error frame and 1011 so the client retries, never a silent drop.
func (s *Server) internalError(c *conn, err error, what string) {
	id := s.logInternal(c, err, what)
	c.sendError("internal_error", what+" failed; retry later (error id "+id+")", "")
	if c.closing.CompareAndSwap(false, true) {
		_ = c.sess.CloseWithMsg(melody.FormatCloseMessage(1011, "internal_error"))
	}
}

// newPresence builds the presence row a verified hello asks for; pid and
// cwd are required (the row's NOT NULL columns), else an invalid_message
// error and ok=false.
func (s *Server) newPresence(c *conn, frame string, mesh meshd.Mesh, member meshd.Member, sessionPubkey string, in *wire.PeerInfo) (meshd.Presence, bool) {
	if in.PID == nil || in.CWD == nil {
		s.invalidHello(c, frame+": pid and cwd required")
		return meshd.Presence{}, false
	}
	if n := len([]rune(in.DisplayName)); n > maxDisplayNameChars {
		s.invalidHello(c, fmt.Sprintf("%s: displayName longer than %d characters (got %d)", frame, maxDisplayNameChars, n))
		return meshd.Presence{}, false
	}
	displayName := in.DisplayName
	if displayName == "" {
		displayName = member.DisplayName
	}
	return meshd.Presence{
		MeshID: mesh.ID, MemberID: member.ID, MemberPubkey: member.Pubkey,
		SessionID: in.SessionID, SessionPubkey: sessionPubkey, DisplayName: displayName,
		PID: *in.PID, CWD: *in.CWD, NodeID: s.cfg.NodeID, Visible: true,
		Hostname: in.Hostname, PeerType: in.PeerType, Channel: in.Channel, Model: in.Model,
	}, true
}

func firstNonEmpty(a, b []meshd.Group) []meshd.Group {
	if len(a) > 0 {
		return a
	}
	if b != nil {
		return b
	}
	return []meshd.Group{}
}

// attach finishes a verified handshake: presence row (reattach, dedup,
// capacity under lock), hello_ack first (A.3-19), then fan-out interest,
// the drain, and peer_joined unless this was a silent reattach.
// attachOpts carries what differs between hello and session_hello.
type attachOpts struct {
	caps        []string
	session     bool
	restored    *meshd.PeerState // hello path: the member's saved peer_state
	helloGroups []meshd.Group
}

func (s *Server) attach(ctx context.Context, c *conn, req meshd.AttachRequest, mesh meshd.Mesh, member meshd.Member, opts attachOpts) {
	session := opts.session
	req.Presence.SocketID = c.socketID
	req.MaxPerMesh = s.cfg.MaxConnectionsPerMesh
	req.PendingWindow = pendingWindow
	res, ok := s.attachPresence(ctx, c, req, mesh, member)
	if !ok {
		return
	}
	pres := res.Presence
	if pres.DisplayName == "" {
		pres.DisplayName = req.Presence.DisplayName
	}
	for _, r := range res.Replaced {
		if err := s.closePresence(ctx, r.PresenceID, r.SocketID, wire.ReasonSessionReplaced); err != nil {
			c.logger().Warn().Err(err).Msg("publish session_replaced")
		}
	}
	for _, cp := range opts.caps {
		if cp == "client_ack" {
			c.acks.Store(true)
		}
	}
	log := s.log.With().Str("mesh_id", pres.MeshID).Str("presence_id", pres.ID).Str("member_id", member.ID).Logger()
	c.mu.Lock()
	c.pres, c.member, c.mesh, c.log = pres, member, mesh, log
	c.mu.Unlock()

	ack := wire.HelloAck{Type: wire.TypeHelloAck, PresenceID: pres.ID, MemberDisplayName: pres.DisplayName, MeshPolicy: meshPolicy(mesh)}
	if !(session && res.Reattached) {
		ack.MemberProfile = memberProfile(member)
	}
	if opts.restored != nil && !res.Reattached {
		restoreInto(&pres, &ack, *opts.restored, opts.helloGroups)
		if err := s.applyRestored(ctx, pres); err != nil {
			log.Warn().Err(err).Msg("restore peer state")
		}
		c.mu.Lock()
		c.pres = pres
		c.mu.Unlock()
	}
	// From here the close path leases the presence and releases claims.
	c.mu.Lock()
	c.authed = true
	c.mu.Unlock()
	if c.helloTime != nil {
		c.helloTime.Stop()
	}
	// Fan-out interest first, confirmed by the NATS server, then hello_ack:
	// a kick, disconnect or wake-up published by another replica the
	// moment the client sees hello_ack must find this socket subscribed.
	if err := s.takeInterest(c, pres, member); err != nil {
		s.internalError(c, err, "fan-out subscribe")
		return
	}
	c.send(ack)
	log.Info().Bool("reattached", res.Reattached).Str("role", pres.Role).Msg("ws hello")
	c.wake()
	if res.Reattached || req.Presence.Ephemeral {
		return
	}
	ev := wire.SystemEvent{Name: pres.DisplayName, DisplayName: pres.DisplayName, Pubkey: pres.RoutingPubkey(), Groups: pres.Groups, PeerType: pres.PeerType}
	event, exclMember, exclPresence := "peer_joined", member.Pubkey, ""
	if session {
		exclMember, exclPresence = "", pres.ID
	}
	if opts.restored != nil {
		event, ev.LastSeenAt, ev.Summary = "peer_returned", ack.LastSeenAt, opts.restored.LastSummary
	}
	if err := s.publishSystem(ctx, pres.MeshID, event, ev, exclMember, exclPresence); err != nil {
		log.Warn().Err(err).Msg("publish " + event)
	}
	payload := map[string]any{"pubkey": member.Pubkey, "groups": pres.Groups, "restored": opts.restored != nil, "role": meshd.RoleControlPlane}
	if session {
		payload = map[string]any{"pubkey": member.Pubkey, "session_pubkey": pres.SessionPubkey, "groups": pres.Groups, "via": "session_hello", "role": meshd.RoleSession}
	}
	// The audit wait holds the socket's read loop (its next send's
	// message_sent must land after this event) but not an admission slot:
	// in a storm of hellos it was the slots' longest wait (docs/benchmarks.md).
	c.afterHello = func() {
		s.audit(c.ctx, pres.MeshID, "peer_joined", member.ID, pres.DisplayName, payload)
	}
}

// takeInterest subscribes the socket to its topics and registers it in the
// hub. A socket that closed meanwhile gives the interest back at once.
func (s *Server) takeInterest(c *conn, pres meshd.Presence, member meshd.Member) error {
	rels, err := s.subscribeConn(c, pres, member)
	if err != nil {
		return err
	}
	if err := s.hub.addAuthed(c, pres.MeshID); err != nil {
		releaseAll(rels)
		return err
	}
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.releases = rels
	}
	c.mu.Unlock()
	if closed {
		s.hub.removeAuthed(c, pres.MeshID)
		releaseAll(rels)
	}
	return nil
}

// applyRestored stores the restored visibility and profile on the new row.
func (s *Server) applyRestored(ctx context.Context, p meshd.Presence) error {
	if !p.Visible {
		if err := s.cfg.Store.SetPresenceVisible(ctx, p.ID, false); err != nil {
			return err
		}
	}
	if len(p.Profile) > 0 {
		return s.cfg.Store.SetPresenceProfile(ctx, p.ID, p.Profile)
	}
	return nil
}

func memberProfile(m meshd.Member) *wire.MemberProfile {
	mp := &wire.MemberProfile{Groups: m.DefaultGroups, MessageMode: m.MessageMode}
	if mp.Groups == nil {
		mp.Groups = []meshd.Group{}
	}
	if mp.MessageMode == "" {
		mp.MessageMode = "push"
	}
	if m.RoleTag != "" {
		rt := m.RoleTag
		mp.RoleTag = &rt
	}
	return mp
}
