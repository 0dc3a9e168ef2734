package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// message_status (B.4.4) reads the queue and the presences of every
// replica; its authz and recipients follow the routing rules of
// delivery.go.

var messageIDRe = regexp.MustCompile(`^[A-Za-z0-9]{8,32}$`)

// handleMessageStatus answers message_status (B.4.4).
func (s *Server) handleMessageStatus(ctx context.Context, c *conn, data []byte, reqID string) error {
	var m wire.MessageStatus
	if err := json.Unmarshal(data, &m); err != nil {
		return invalid("invalid message_status: %v", err)
	}
	if !messageIDRe.MatchString(m.MessageID) {
		c.sendError("invalid_argument", fmt.Sprintf("messageId must be 8-32 base62 chars (got %d)", wire.JSLen(m.MessageID)), reqID)
		return nil
	}
	pres, member, _ := c.snapshot()
	row, err := s.cfg.Store.FindMessage(ctx, pres.MeshID, m.MessageID)
	if err == nil && !mayReadStatus(row, pres, member) {
		err = meshd.ErrNotFound // no oracle for others' message ids
	}
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		c.sendError("not_found", "message not found", reqID)
		return nil
	case errors.Is(err, meshd.ErrAmbiguous):
		c.sendError("ambiguous_prefix", "prefix matched 2 messages — use a longer id", reqID)
		return nil
	case err != nil:
		return fmt.Errorf("message lookup failed: %w", err)
	}
	peers, err := s.cfg.Store.ListPeers(ctx, pres.MeshID)
	if err != nil {
		return fmt.Errorf("list peers failed: %w", err)
	}
	res := wire.MessageStatusResult{
		Type: "message_status_result", MessageID: m.MessageID, TargetSpec: row.TargetSpec,
		Delivered: row.DeliveredAt != nil, Recipients: statusRecipients(row, peers), ReqID: reqID,
	}
	if row.DeliveredAt != nil {
		at := isoTime(*row.DeliveredAt)
		res.DeliveredAt = &at
	}
	c.send(res)
	return nil
}

// mayReadStatus is the message_status authz of A.3-25: the sender (any of
// its sessions), and for a direct message its recipient — the member key
// or the caller's own session key. A multicast's status is readable by the
// sender and by those it addresses.
func mayReadStatus(row meshd.QueuedMessage, pres meshd.Presence, member meshd.Member) bool {
	switch {
	case row.SenderMemberID == member.ID:
		return true
	case isMulticast(row.TargetSpec):
		return inTarget(pres.Groups, row.TargetSpec)
	}
	return row.TargetSpec == member.Pubkey || (pres.SessionPubkey != "" && row.TargetSpec == pres.SessionPubkey)
}

func statusRecipients(row meshd.QueuedMessage, peers []meshd.Presence) []wire.StatusRecipient {
	state := "held"
	if row.DeliveredAt != nil {
		state = "delivered"
	}
	out := []wire.StatusRecipient{}
	if isMulticast(row.TargetSpec) {
		for _, p := range peers {
			if inTarget(p.Groups, row.TargetSpec) {
				out = append(out, wire.StatusRecipient{Name: p.DisplayName, Pubkey: p.RoutingPubkey(), Status: state})
			}
		}
		return out
	}
	for _, p := range peers {
		if p.RoutingPubkey() == row.TargetSpec {
			return append(out, wire.StatusRecipient{Name: p.DisplayName, Pubkey: p.RoutingPubkey(), Status: state})
		}
	}
	short := row.TargetSpec
	if len(short) > 16 {
		short = short[:16]
	}
	return append(out, wire.StatusRecipient{Name: "unknown", Pubkey: short, Status: "disconnected"})
}
