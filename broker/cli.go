package broker

import "net/http"

// cliRoutes registers the enrollment and CLI routes (PROTOCOL.md B.9.3-B.9.5).
func (s *Server) cliRoutes(mux *http.ServeMux) {}
