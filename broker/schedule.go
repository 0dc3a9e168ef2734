package broker

import "context"

// Scheduled messages (PROTOCOL.md B.14.3) and mesh clocks (B.14.4): filled
// in by the HA work (issue 5).
func (s *Server) handleScheduleVerb(ctx context.Context, c *conn, data []byte, reqID string) error {
	c.sendError("unavailable", "scheduled messages are not implemented yet", reqID)
	return nil
}

func (s *Server) handleClockVerb(ctx context.Context, c *conn, data []byte, reqID string) error {
	c.sendError("unavailable", "mesh clocks are not implemented yet", reqID)
	return nil
}
