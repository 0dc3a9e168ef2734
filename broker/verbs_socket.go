package broker

import (
	"context"
	"errors"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/verbs"
)

// The request/response verbs that need no socket — shared state,
// schedules, clocks, grants, audit_query/verify — are package verbs'. The
// broker owns the socket side: it tells verbs who sent the frame and
// writes the reply or the refusal.

func (s *Server) newVerbs() (*verbs.Handler, error) {
	return verbs.New(verbs.Config{Store: s.cfg.Store, Publisher: s.cfg.Fanout, Audit: s.cfg.Audit,
		Logger: s.log, MaxMessageBytes: s.cfg.MaxMessageBytes, Now: s.cfg.Now})
}

// handleVerb answers a frame of type typ through package verbs.
func (s *Server) handleVerb(typ string) frameHandler {
	return func(ctx context.Context, c *conn, data []byte, reqID string) error {
		pres, member, _ := c.snapshot()
		reply, err := s.verbs.Handle(ctx, verbs.Peer{Mesh: c.meshOf(), Member: member, Presence: pres}, typ, data, reqID)
		var (
			no  *verbs.Refusal
			bad *verbs.BadFrame
		)
		switch {
		case errors.As(err, &no):
			c.sendError(no.Code, no.Message, reqID)
		case errors.As(err, &bad):
			return &badFrame{msg: bad.Msg}
		case err != nil:
			return err
		case reply != nil:
			c.send(reply)
		}
		return nil
	}
}

// meshOf is the connection's mesh as of its hello.
func (c *conn) meshOf() meshd.Mesh {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mesh
}
