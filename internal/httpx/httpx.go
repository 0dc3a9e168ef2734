// Package httpx owns what every HTTP route of a replica shares, whichever
// package serves it: request ids, the access log, CORS and JSON answers.
package httpx

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// RequestIDHeader carries a request's id in both directions.
const RequestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds an id taken from a client.
const maxRequestIDLen = 128

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// RequestID returns the id Handler put on w's response ("" outside it).
// Handlers echo it in error bodies so a client can quote it.
func RequestID(w http.ResponseWriter) string { return w.Header().Get(RequestIDHeader) }

// NewID returns 16 random hex characters (request and error ids).
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// validID accepts a client's id when it is short printable ASCII without
// spaces, so it can go into headers and logs unescaped.
func validID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// Handler wraps next with a request id (the caller's valid X-Request-Id, or
// a new one, set on the response before next runs), one access log line per
// request (method, path, status, duration, request id) and CORS for the
// allowed origins (CORS_ALLOWED_ORIGINS; none by default).
func Handler(log zerolog.Logger, next http.Handler, allowedOrigins ...string) http.Handler {
	next = CORS(next, allowedOrigins...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(RequestIDHeader)
		if !validID(id) {
			id = NewID()
		}
		w.Header().Set(RequestIDHeader, id)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		log.Info().Str("method", r.Method).Str("path", r.URL.Path).Int("status", rec.status).
			Dur("duration", time.Since(start)).Str("request_id", id).Msg("http")
	})
}

// statusRecorder remembers the status written for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack lets the WebSocket upgrade (which asserts http.Hijacker) through;
// the access log records 101.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	s.status, s.wrote = http.StatusSwitchingProtocols, true
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

// CORS answers cross-origin requests only from the allowed origins
// (CORS_ALLOWED_ORIGINS, exact scheme://host[:port] strings, or "*"): a
// request whose Origin is listed gets Access-Control-Allow-Origin with that
// origin (Vary: Origin); any other gets no CORS header at all, so a browser
// page elsewhere can neither read an answer nor send a preflighted request
// (issue 12: upstream's "*" let any page post to the hook). Every OPTIONS
// is answered 204 (docs/protocol.md B.9), with the CORS headers only for an
// allowed origin.
func CORS(next http.Handler, allowedOrigins ...string) http.Handler {
	allowed := map[string]bool{}
	for _, o := range allowedOrigins {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			allowed[o] = true
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if origin := r.Header.Get("Origin"); origin != "" && (allowed[origin] || allowed["*"]) {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			h.Set("Access-Control-Allow-Methods", "POST, GET, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Request-Id, X-Mesh-Id, X-Member-Id, X-File-Name, X-Tags, X-Persistent, X-Target-Spec")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
