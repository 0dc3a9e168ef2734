package broker

import (
	"context"

	"github.com/meshd/meshd"
)

// The road's entry points for callers outside the socket code: the
// scheduler job (package jobs) sends on a member's behalf through Route and
// Announce (jobs.Router), the delivery canary (package canary) enqueues
// through the group commit (canary.Enqueuer). Each is delivery.go's own
// step, not a copy.

// Route is route (delivery.go) for a message sent on from's behalf by the
// scheduler job (package jobs): refused is the refusal's text, "" when
// routed.
func (s *Server) Route(ctx context.Context, meshID string, from meshd.Member, target string) (multicast bool, refused string, err error) {
	multicast, no, err := s.route(ctx, meshID, sender{member: from, name: from.DisplayName}, target)
	if no != nil {
		return false, no.text, nil
	}
	return multicast, "", err
}

// Announce is announce (delivery.go) for a row the scheduler job committed
// on from's behalf; a multicast push carries subtype.
func (s *Server) Announce(ctx context.Context, q *meshd.QueuedMessage, from meshd.Member, multicast bool, subtype string) {
	s.announce(ctx, q, sender{member: from, name: from.DisplayName}, multicast, announceOpts{subtype: subtype})
}

// enqueuer is the group commit of delivery.go as the canary's Enqueuer.
type enqueuer struct{ s *Server }

func (e enqueuer) Enqueue(ctx context.Context, q *meshd.QueuedMessage) error {
	it := &enqueueItem{q: q}
	err := e.s.enqueues.do(ctx, it)
	if err == nil {
		err = it.err
	}
	return err
}
