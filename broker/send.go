package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Ack error texts of B.4.1 (clients match on their prefixes).
const (
	errNoRecipient = "no connected peer for target (not online, or targetSpec is your own key without another session)"
	errDMBlocked   = "blocked by recipient grants (sender lacks dm capability)"
	errTopics      = "unsupported_target: topics are not supported"
)

// handleSend implements B.4.1 with meshd's A.3 decisions: the recipient
// check and grants come from Postgres, delivery is queue row + wake-up over
// the fanout, broadcasts are published once per mesh.
func (s *Server) handleSend(ctx context.Context, c *conn, data []byte, _ string) error {
	var m wire.Send
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("invalid send: %w", err)
	}
	if err := validateSend(&m); err != nil {
		return err
	}
	pres, member, _ := c.snapshot()
	reject := func(reason, text string) error {
		s.met.messagesRejected.WithLabelValues(reason).Inc()
		c.send(wire.Ack{Type: wire.TypeAck, ID: m.ID, MessageID: "", Queued: false, Error: text})
		return nil
	}
	if !s.sendRL.Take(member.ID, s.cfg.Now()) {
		// Upstream's text with the configured numbers (B.4.1 step 1).
		return reject("rate_limit", fmt.Sprintf("rate_limit: max %g msg/min (burst %g) — slow down", s.cfg.SendPerMinute, s.cfg.SendBurst))
	}
	// B.4.1 step 2: JS string lengths (UTF-16 code units).
	if n := jsLen(*m.Ciphertext) + jsLen(*m.Nonce) + jsLen(m.TargetSpec); n > s.cfg.MaxMessageBytes {
		return reject("too_large", fmt.Sprintf("payload too large: %d bytes > MAX_MESSAGE_BYTES=%d", n, s.cfg.MaxMessageBytes))
	}
	q := &meshd.QueuedMessage{
		MeshID: pres.MeshID, SenderMemberID: member.ID, SenderSessionPubkey: pres.SessionPubkey,
		TargetSpec: m.TargetSpec, Priority: meshd.Priority(m.Priority), Nonce: *m.Nonce,
		Ciphertext: *m.Ciphertext, ClientMessageID: m.ClientMessageID, RequestFingerprint: m.RequestFingerprint,
	}
	switch {
	case strings.HasPrefix(m.TargetSpec, "#"):
		c.send(wire.Ack{Type: wire.TypeAck, ID: m.ID, Queued: false, Error: errTopics})
		return nil
	case isMulticast(m.TargetSpec):
		return s.sendMulticast(ctx, c, &m, q, pres, member)
	}
	rcpt, err := s.cfg.Store.DirectRecipient(ctx, pres.MeshID, m.TargetSpec)
	if errors.Is(err, meshd.ErrNotFound) || (err == nil && m.TargetSpec == pres.SessionPubkey && pres.SessionPubkey != "") {
		return reject("no_recipient", errNoRecipient)
	}
	if err != nil {
		return fmt.Errorf("recipient lookup failed: %w", err)
	}
	if !rcpt.Grants.Allows(member.Pubkey, pres.SessionPubkey, "dm") {
		s.met.droppedByGrant.WithLabelValues("dm").Inc()
		c.send(wire.Ack{Type: wire.TypeAck, ID: m.ID, Queued: false, Error: errDMBlocked})
		return nil
	}
	if err := s.cfg.Store.Enqueue(ctx, q, false); err != nil {
		return fmt.Errorf("enqueue failed: %w", err)
	}
	c.send(wire.Ack{Type: wire.TypeAck, ID: m.ID, MessageID: q.ID, Queued: true})
	s.audit(ctx, pres.MeshID, "message_sent", member.ID, pres.DisplayName, map[string]any{"targetSpec": m.TargetSpec, "priority": m.Priority})
	// Wake whichever replica holds the recipient. A lost wake-up only delays
	// delivery until the periodic re-drain (NATS is not the source of truth).
	if err := s.cfg.Fanout.Publish(ctx, peerTopic(pres.MeshID, m.TargetSpec), nil); err != nil {
		c.logger().Warn().Err(err).Msg("publish wake-up")
	}
	return nil
}

func validateSend(m *wire.Send) error {
	switch {
	case m.TargetSpec == "":
		return errors.New("send: targetSpec required")
	case m.Nonce == nil || m.Ciphertext == nil:
		return errors.New("send: nonce and ciphertext required")
	}
	if m.Priority == "" {
		m.Priority = string(meshd.PriorityNext)
	}
	if !meshd.Priority(m.Priority).Valid() {
		return fmt.Errorf("send: priority must be now, next or low (got %q)", truncate(m.Priority, 16))
	}
	return nil
}

func isMulticast(target string) bool {
	return target == "*" || strings.HasPrefix(target, "@")
}

// sendMulticast stores the row already delivered (offline peers never get a
// broadcast later, B.4.3) and publishes one envelope on the mesh topic; each
// replica pushes it to its own eligible sockets.
func (s *Server) sendMulticast(ctx context.Context, c *conn, m *wire.Send, q *meshd.QueuedMessage, pres meshd.Presence, member meshd.Member) error {
	if err := s.cfg.Store.Enqueue(ctx, q, true); err != nil {
		return fmt.Errorf("enqueue failed: %w", err)
	}
	c.send(wire.Ack{Type: wire.TypeAck, ID: m.ID, MessageID: q.ID, Queued: true})
	s.audit(ctx, pres.MeshID, "message_sent", member.ID, pres.DisplayName, map[string]any{"targetSpec": m.TargetSpec, "priority": m.Priority})
	ev := meshEventMsg{
		Kind: kindBroadcast, Target: m.TargetSpec,
		SenderMemberID: member.ID, SenderMemberPubkey: member.Pubkey, SenderSessionPubkey: pres.SessionPubkey,
		Push: &wire.Push{
			Type: wire.TypePush, MessageID: q.ID, MeshID: pres.MeshID, SenderPubkey: pres.RoutingPubkey(),
			SenderMemberPubkey: member.Pubkey, SenderMemberID: member.ID, SenderName: pres.DisplayName,
			Priority: m.Priority, Nonce: q.Nonce, Ciphertext: q.Ciphertext, CreatedAt: isoTime(q.CreatedAt),
			ReplyToID: m.ReplyToID,
		},
	}
	if err := s.publishMesh(ctx, pres.MeshID, ev); err != nil {
		c.logger().Warn().Err(err).Msg("publish broadcast")
	}
	return nil
}

// jsLen is the length of s in UTF-16 code units, as JS's String.length.
func jsLen(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

func (s *Server) handleClientAck(ctx context.Context, c *conn, data []byte, _ string) error {
	var m wire.ClientAck
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("invalid client_ack: %w", err)
	}
	c.acks.Store(true)
	if m.ClientMessageID == "" && m.BrokerMessageID == "" {
		return nil
	}
	pres, member, _ := c.snapshot()
	keys := []string{member.Pubkey}
	if pres.SessionPubkey != "" {
		keys = append(keys, pres.SessionPubkey)
	}
	_, err := s.cfg.Store.ClientAck(ctx, pres.MeshID, keys, m.ClientMessageID, m.BrokerMessageID)
	return err
}
