package verbs

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// message_status (docs/protocol.md B.4.4) reads the queue and the
// presences of every replica; its authz and recipients follow the routing
// rules of a send (meshd.IsMulticast, meshd.InTarget).

// MessageStore finds a queued message for message_status.
type MessageStore interface {
	// FindMessage resolves message_status ids: 32 chars exact, shorter ones
	// by prefix within meshID. meshd.ErrNotFound, or ErrAmbiguous on 2+.
	FindMessage(ctx context.Context, meshID, id string) (meshd.QueuedMessage, error)
}

var messageIDRe = regexp.MustCompile(`^[A-Za-z0-9]{8,32}$`)

// handleMessageStatus answers message_status (B.4.4).
func (h *Handler) messageStatus(ctx context.Context, p Peer, data []byte, reqID string) (any, error) {
	var m wire.MessageStatus
	if err := decode(data, &m, "message_status"); err != nil {
		return nil, err
	}
	if !messageIDRe.MatchString(m.MessageID) {
		return nil, refuse("invalid_argument", fmt.Sprintf("messageId must be 8-32 base62 chars (got %d)", wire.JSLen(m.MessageID)))
	}
	pres, member := p.Presence, p.Member
	row, err := h.cfg.Store.FindMessage(ctx, pres.MeshID, m.MessageID)
	if err == nil && !mayReadStatus(row, pres, member) {
		err = meshd.ErrNotFound // no oracle for others' message ids
	}
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		return nil, refuse("not_found", "message not found")
	case errors.Is(err, meshd.ErrAmbiguous):
		return nil, refuse("ambiguous_prefix", "prefix matched 2 messages — use a longer id")
	case err != nil:
		return nil, fmt.Errorf("message lookup failed: %w", err)
	}
	peers, err := h.cfg.Store.ListPeers(ctx, pres.MeshID)
	if err != nil {
		return nil, fmt.Errorf("list peers failed: %w", err)
	}
	res := wire.MessageStatusResult{
		Type: "message_status_result", MessageID: m.MessageID, TargetSpec: row.TargetSpec,
		Delivered: row.DeliveredAt != nil, Recipients: statusRecipients(row, peers), ReqID: reqID,
	}
	if row.DeliveredAt != nil {
		at := wire.FormatISOTime(*row.DeliveredAt)
		res.DeliveredAt = &at
	}
	return res, nil
}

// mayReadStatus is the message_status authz of A.3-25: the sender (any of
// its sessions), and for a direct message its recipient — the member key
// or the caller's own session key. A multicast's status is readable by the
// sender and by those it addresses.
func mayReadStatus(row meshd.QueuedMessage, pres meshd.Presence, member meshd.Member) bool {
	switch {
	case row.SenderMemberID == member.ID:
		return true
	case meshd.IsMulticast(row.TargetSpec):
		return meshd.InTarget(pres.Groups, row.TargetSpec)
	}
	return row.TargetSpec == member.Pubkey || (pres.SessionPubkey != "" && row.TargetSpec == pres.SessionPubkey)
}

func statusRecipients(row meshd.QueuedMessage, peers []meshd.Presence) []wire.StatusRecipient {
	state := "held"
	if row.DeliveredAt != nil {
		state = "delivered"
	}
	out := []wire.StatusRecipient{}
	if meshd.IsMulticast(row.TargetSpec) {
		for _, p := range peers {
			if meshd.InTarget(p.Groups, row.TargetSpec) {
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
