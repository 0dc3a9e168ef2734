package broker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/internal/httpx"
)

// Register adds the broker's routes to mux: /ws, the health endpoints,
// /metrics (unless Config.MetricsElsewhere) and the JSON 404 for every path
// no other route claims.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("/ws", s.serveWS)
	mux.HandleFunc("GET /health", s.serveHealth)
	mux.HandleFunc("GET /health/ready", s.serveReady)
	if !s.cfg.MetricsElsewhere {
		mux.Handle("GET /metrics", s.MetricsHandler())
	}
	mux.HandleFunc("/", s.serveNotFound)
}

// MetricsHandler serves the registry in Prometheus' exposition formats.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{Registry: s.cfg.Registry})
}

// MetricsRoutes serves /metrics alone, with the JSON 404 elsewhere: the
// mux of the METRICS_ADDR listener.
func (s *Server) MetricsRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.MetricsHandler())
	mux.HandleFunc("/", s.serveNotFound)
	return mux
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return httpx.CORS(mux)
}

// serveWS upgrades /ws (a query string is accepted, A.1). A draining
// replica refuses new sockets with 503 so the load balancer retries
// elsewhere.
func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ok": false, "error": "draining"})
		return
	}
	ip := clientIP(r)
	t, ok := s.hub.reservePreauth(ip)
	if !ok {
		s.met.connectionsRejected.WithLabelValues(preauthLimitReason).Inc()
		s.log.Info().Str("ip", ip).Int("max_preauth_per_ip", s.cfg.MaxPreauthPerIP).Msg("ws refused: too many sockets before hello")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"ok": false, "error": preauthLimitReason})
		return
	}
	defer s.hub.unreservePreauth(t) // only when no socket claimed it
	r = r.WithContext(context.WithValue(r.Context(), preauthKey{}, t))
	if err := s.upgrade(w, r, t); err != nil {
		s.log.Debug().Err(err).Msg("ws upgrade failed")
	}
}

// preauthLimitReason is the 429 error and the rejection metric's label when
// an IP has MAX_PREAUTH_PER_IP sockets that have not completed hello.
const preauthLimitReason = "too_many_preauth"

// clientIP is the host of the TCP peer (forwarded headers are not trusted).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) healthBody() map[string]any {
	db, nats := "up", "up"
	if !s.dbUp.Load() {
		db = "down"
	}
	if s.cfg.NATS != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if s.cfg.NATS.Ping(ctx) != nil {
			nats = "down"
		}
	}
	return map[string]any{
		"db": db, "nats": nats, "version": s.cfg.Version, "gitSha": s.cfg.GitSHA,
		"uptime": int64(s.cfg.Now().Sub(s.started) / time.Second), "node": s.cfg.NodeID,
	}
}

// serveHealth is liveness: always 200, the body says what is down (A.3-1).
func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	body := s.healthBody()
	body["status"] = "ok"
	writeJSON(w, http.StatusOK, body)
}

// serveReady is the deploy gate (A.3-1): 503 with reasons when the DB or
// NATS is down, the replica drains, or no delivery canary round completed
// within CanaryStallAfter (delivery_stalled, package canary).
func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	body := s.healthBody()
	var reasons []string
	if body["db"] != "up" {
		reasons = append(reasons, "db_down")
	}
	if body["nats"] != "up" {
		reasons = append(reasons, "nats_down")
	}
	if s.draining.Load() {
		reasons = append(reasons, "draining")
	}
	if stalled, since := s.canary.Stalled(); stalled {
		reasons = append(reasons, "delivery_stalled")
		body["canarySecondsSinceLast"] = int64(since / time.Second)
	}
	if exp := s.cfg.ExpectedMigration; exp != "" && body["db"] == "up" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		name, sha, err := s.cfg.Store.LatestApplied(ctx)
		cancel()
		switch {
		case err != nil && !errors.Is(err, meshd.ErrNotFound):
			reasons = append(reasons, "readiness_check_error")
		case name != exp && sha != exp:
			reasons = append(reasons, "migration_missing")
			body["expected"], body["latestMigration"] = exp, name
		}
	}
	if len(reasons) > 0 {
		body["status"] = "not_ready"
		body["reasons"] = reasons
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	body["status"] = "ready"
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) serveNotFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, map[string]any{"ok": false, "error": "not_found", "path": r.URL.Path})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
