package broker

import "context"

// audit records one audit-chain event (PROTOCOL.md B.8) for meshID. It
// never blocks the caller: the audit work (issue 5) fills this in.
func (s *Server) audit(ctx context.Context, meshID, event, actorID, actorName string, payload map[string]any) {
}

func (s *Server) handleAuditQuery(ctx context.Context, c *conn, data []byte, reqID string) error {
	c.sendError("unavailable", "audit_query is not implemented yet", reqID)
	return nil
}

func (s *Server) handleAuditVerify(ctx context.Context, c *conn, data []byte, reqID string) error {
	c.sendError("unavailable", "audit_verify is not implemented yet", reqID)
	return nil
}
