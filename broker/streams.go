package broker

import "context"

// Streams (PROTOCOL.md B.14.2): filled in by the HA work (issue 5).
func (s *Server) handleStreamVerb(ctx context.Context, c *conn, data []byte, reqID string) error {
	c.sendError("unavailable", "streams are not implemented yet", reqID)
	return nil
}
