package broker

import (
	"context"
	"errors"
	"sync"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
	"github.com/meshd/meshd/wire"
)

// A send to "#<topic>" (docs/protocol.md C.2.4). collab resolves the topic
// in the sender's mesh, checks that the sender's member is subscribed and
// stores the post in the topic's history; the broker then delivers it on
// the ordinary road of a direct message, once per recipient member: one
// queue row addressed to the member's pubkey, committed by the group
// commit, then a wake-up over NATS for whichever replica holds one of the
// member's sockets. A member online anywhere gets it at once; an offline
// one gets it from the drain when it connects. The recipients are the
// topic's members at send time, so a member who left gets nothing and a
// socket outside the topic never sees it. The sender's own member gets no
// row (its other sessions read the post with topic_history).

// sendTopic answers a send whose targetSpec starts with '#'. nack is
// handleSend's refusal ack.
func (s *Server) sendTopic(ctx context.Context, c *conn, m *wire.Send, from sender, nack func(reason, text string) error) error {
	peer := collabPeer(c)
	d, err := s.collab.TopicSend(ctx, peer, collab.TopicPost{
		Target: m.TargetSpec, Nonce: *m.Nonce, Ciphertext: *m.Ciphertext,
		BodyVersion: m.BodyVersion, ReplyToID: m.ReplyToID,
	})
	var ce *collab.Error
	if errors.As(err, &ce) {
		reason := "no_recipient" // topic_not_found, not_topic_member
		if ce.Code == "invalid_args" {
			reason = "parse_or_handler"
		}
		return nack(reason, ce.Code+": "+ce.Message)
	}
	var rows []*meshd.QueuedMessage
	if err == nil {
		for _, r := range d.Recipients {
			if r.MemberID == from.member.ID {
				continue
			}
			rows = append(rows, &meshd.QueuedMessage{
				MeshID: peer.MeshID, SenderMemberID: from.member.ID, SenderSessionPubkey: from.sessionPubkey,
				TargetSpec: r.Pubkey, Priority: meshd.Priority(m.Priority), Nonce: *m.Nonce, Ciphertext: *m.Ciphertext,
				ClientMessageID: m.ClientMessageID, RequestFingerprint: m.RequestFingerprint, SenderName: from.name,
				Topic: d.Topic.Name, BodyVersion: d.Message.BodyVersion, ReplyToID: d.Message.ReplyToID,
			})
		}
		err = s.enqueueAll(ctx, rows)
	}
	if err != nil {
		id := s.logInternal(c, err, "topic send")
		return nack("unavailable", "unavailable: the message could not be stored; retry (error id "+id+")")
	}
	// messageId is the topic message id, the one topic_history lists.
	c.send(wire.Ack{Type: wire.TypeAck, ID: m.ID, MessageID: d.Message.ID, Queued: true})
	// Each recipient's row has its own message_sent (the store writes it
	// with the row); this entry ties them to the topic post.
	s.audit(ctx, peer.MeshID, "topic_message_sent", from.member.ID, from.name, map[string]any{
		"targetSpec": "#" + d.Topic.ID, "topic": d.Topic.Name, "topicMessageId": d.Message.ID,
		"priority": m.Priority, "recipients": len(rows)})
	for _, q := range rows {
		if err := s.cfg.Fanout.Publish(ctx, meshd.PeerTopic(q.MeshID, q.TargetSpec), nil); err != nil {
			s.log.Warn().Err(err).Str("mesh_id", q.MeshID).Msg("publish topic wake-up")
		}
	}
	return nil
}

// enqueueAll stores rows through the group commit, all posted at once so
// they share statements, and waits for them; it returns the first failure.
// (The topic send holds its socket's read loop for that one commit.)
func (s *Server) enqueueAll(ctx context.Context, rows []*meshd.QueuedMessage) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for _, q := range rows {
		it := &enqueueItem{q: q}
		wg.Add(1)
		s.enqueues.post(ctx, it, func(err error) {
			defer wg.Done()
			if err == nil {
				err = it.err
			}
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return first
}
