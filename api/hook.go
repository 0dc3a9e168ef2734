package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/internal/httpx"
	"github.com/meshd/meshd/internal/ratelimit"
	"github.com/meshd/meshd/wire"
)

// POST /hook/set-status is how Claude Code's hooks report a session's status
// (docs/protocol.md B.6.4): Stop → idle, UserPromptSubmit → working. It is
// unauthenticated and fire-and-forget (the CLI waits 1 s), so the handler
// rate-limits per client IP, requires Content-Type: application/json (a
// browser page cannot send that without a CORS preflight, which only
// CORS_ALLOWED_ORIGINS pass), bounds the body, rate-limits per (pid, cwd)
// before looking at it, and finishes its database work even when the
// client has gone.
//
// Hostile callers (issue 12 item 1): the vocabulary is idle and working,
// what real hooks send; dnd from a hook is 400 invalid_status, since a dnd
// holds a session's next/low messages and only a manual one is sacred. The
// answer is {ok:true} (pending:true when queued), never presence ids, so
// the route is not an oracle for which cwds are live.
const (
	hookRoute = "/hook/set-status"
	// hookSweepEvery is how often the hook bucket forgets idle keys (B.10);
	// without it every (pid, cwd) ever seen would stay in memory.
	hookSweepEvery = 5 * time.Minute
	// hookKeyIdle is how long a key must be idle to be forgotten: far past
	// the minute a bucket needs to refill, so forgetting changes nothing.
	hookKeyIdle = 10 * time.Minute
	// hookTimeout bounds one request's database work and wake-ups.
	hookTimeout = 10 * time.Second
	// hookMaxKeys bounds each hook bucket (per IP, per (pid, cwd)): past
	// it the least recently used key is forgotten (counted in
	// broker_hook_rate_limit_evictions_total), so a flood of made-up pids
	// or cwds costs at most ~hookMaxKeys × 200 bytes.
	hookMaxKeys = 50_000
)

// Error strings of the route (B.6.4, plus meshd's 400s and 500).
const (
	errHookTooLarge    = "payload too large"
	errHookRateLimited = "rate limited"
	errHookRequired    = "cwd and status required"
	errHookStatus      = "invalid_status"
	errHookContentType = "unsupported_media_type"
	errHookInternal    = "internal_error"
)

// hookHandler serves the route; its bucket is created in New and dies
// with the Server.
type hookHandler struct {
	s *Server // immutable
	// buckets: rl keyed "<pid or 0>:<cwd>" (B.10), ipRL keyed by client
	// IP; per replica.
	*buckets
}

func newHookHandler(s *Server) *hookHandler {
	return &hookHandler{s: s, buckets: newBuckets(s.cfg.HookRateLimitPerMin, s.cfg.HookRateLimitPerIPPerMin, s.cfg.Now())}
}

// buckets are a route's two rate limits: rl per key of the route, ipRL
// per client IP, both bounded to hookMaxKeys keys.
type buckets struct {
	rl        *ratelimit.TokenBucket
	ipRL      *ratelimit.TokenBucket
	lastSweep atomic.Int64 // cfg.Now() in UnixNano of the last bucket sweep
}

func newBuckets(perKeyPerMin, perIPPerMin int, now time.Time) *buckets {
	n, ip := float64(perKeyPerMin), float64(perIPPerMin)
	b := &buckets{rl: ratelimit.NewBounded(n, n, hookMaxKeys), ipRL: ratelimit.NewBounded(ip, ip, hookMaxKeys)}
	b.lastSweep.Store(now.UnixNano())
	return b
}

// hookRequest is the body {cwd, pid?, status, session_id?}; session_id is
// unused upstream too. A pid that does not fit PostgreSQL's integer is
// invalid JSON here rather than a database error.
type hookRequest struct {
	CWD    string `json:"cwd"`
	PID    *int32 `json:"pid"`
	Status string `json:"status"`
}

// pid returns the pid, 0 when absent (B.6.4 "pid or 0").
func (r *hookRequest) pid() int {
	if r.PID == nil {
		return 0
	}
	return int(*r.PID)
}

// hookReply is every body the route answers.
type hookReply struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	Pending   bool   `json:"pending,omitempty"`
	RequestID string `json:"requestId,omitempty"` // on errors
	ErrorID   string `json:"errorId,omitempty"`   // on 500
}

// hookError answers an error reply carrying the request id.
func hookError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, hookReply{Error: msg, RequestID: httpx.RequestID(w)})
}

func (h *hookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s := h.s
	s.met.hookRequests.Inc()
	now := s.cfg.Now()
	h.maybeSweep(now)
	ip := clientIP(r)
	if !h.ipRL.Take(ip, now) {
		s.met.hookRateLimited.Inc()
		s.log.Info().Str("route", hookRoute).Str("ip", ip).Msg("hook rate limited per IP")
		hookError(w, http.StatusTooManyRequests, errHookRateLimited)
		return
	}
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		s.log.Debug().Str("route", hookRoute).Str("ip", ip).Msg("hook without Content-Type: application/json")
		hookError(w, http.StatusUnsupportedMediaType, errHookContentType)
		return
	}
	body, err := readHookBody(w, r, s.cfg.MaxMessageBytes)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			hookError(w, http.StatusRequestEntityTooLarge, errHookTooLarge)
			return
		}
		s.log.Debug().Err(err).Str("route", hookRoute).Msg("hook body unreadable")
		hookError(w, http.StatusBadRequest, "unreadable body")
		return
	}
	if wire.HasNUL(body) { // text columns cannot hold U+0000 (issue 12 item 8)
		hookError(w, http.StatusBadRequest, wire.CodeInvalidString)
		return
	}
	var req hookRequest
	perr := json.Unmarshal(body, &req)
	if perr != nil {
		req = hookRequest{} // rate-limited under "0:"
	}
	if !h.rl.Take(hookKey(&req), now) {
		s.met.hookRateLimited.Inc()
		s.log.Info().Str("route", hookRoute).Str("cwd", req.CWD).Int("pid", req.pid()).Msg("hook rate limited")
		hookError(w, http.StatusTooManyRequests, errHookRateLimited)
		return
	}
	if code, msg := validateHook(&req, perr); msg != "" {
		s.log.Debug().Str("route", hookRoute).Int("code", code).Str("error", msg).Msg("hook rejected")
		hookError(w, code, msg)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), hookTimeout)
	defer cancel()
	rep, ids, err := h.apply(ctx, req.pid(), req.CWD, meshd.Status(req.Status))
	if err != nil {
		id := httpx.NewID()
		s.log.Error().Err(err).Str("error_id", id).Str("request_id", httpx.RequestID(w)).Str("route", hookRoute).
			Str("cwd", req.CWD).Int("pid", req.pid()).Msg("hook failed")
		writeJSON(w, http.StatusInternalServerError, hookReply{Error: errHookInternal, ErrorID: id, RequestID: httpx.RequestID(w)})
		return
	}
	writeJSON(w, http.StatusOK, rep)
	s.log.Info().Str("route", hookRoute).Str("cwd", req.CWD).Int("pid", req.pid()).Str("status", req.Status).
		Str("ip", ip).Strs("presence_ids", ids).Bool("pending", rep.Pending).
		Int64("latency_ms", time.Since(start).Milliseconds()).Msg("hook")
}

// hookKey is the bucket key "<pid or 0>:<cwd>" (B.10). A cwd longer than
// 256 bytes is keyed by its SHA-256 so that a flood of distinct large
// bodies costs ~100 bytes per key until the sweep, not up to
// MaxMessageBytes.
func hookKey(req *hookRequest) string {
	cwd := req.CWD
	if len(cwd) > 256 {
		sum := sha256.Sum256([]byte(cwd))
		cwd = "sha256:" + hex.EncodeToString(sum[:])
	}
	return fmt.Sprintf("%d:%s", req.pid(), cwd)
}

// clientIP is the host of the connection's remote address: the per-IP
// bucket key. Forwarded headers are not trusted (anyone can send them);
// behind a proxy every client shares the proxy's bucket, so size
// HOOK_RATE_LIMIT_PER_IP_PER_MIN for it (docs/env-vars.md).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// isJSONContentType accepts application/json with any parameters (what
// real hooks send, charset included).
func isJSONContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// readHookBody reads the whole body, failing with *http.MaxBytesError past
// limit bytes (B.9.2) without reading more than limit+1 of it.
func readHookBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, error) {
	if r.ContentLength > int64(limit) {
		return nil, &http.MaxBytesError{Limit: int64(limit)}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
}

// validateHook returns the HTTP code and error of a rejected request, or
// "" when it is valid. Missing fields are upstream's 200 {ok:false}; bad
// JSON and a status other than idle or working (dnd included) are meshd's
// 400s (upstream answers 500 to unknown statuses and accepts dnd).
func validateHook(req *hookRequest, perr error) (int, string) {
	switch {
	case perr != nil:
		return http.StatusBadRequest, "invalid JSON: " + hookJSONReason(perr)
	case req.CWD == "" || req.Status == "":
		return http.StatusOK, errHookRequired
	case !hookStatus(meshd.Status(req.Status)):
		return http.StatusBadRequest, errHookStatus
	}
	return 0, ""
}

// hookStatus is the hook vocabulary: what Claude Code's Stop and
// UserPromptSubmit hooks send.
func hookStatus(st meshd.Status) bool { return st == meshd.StatusIdle || st == meshd.StatusWorking }

// hookJSONReason describes a decoding error without Go type names.
func hookJSONReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%s: unexpected %s", te.Field, truncate(te.Value, 32))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at offset %d", se.Error(), se.Offset)
	}
	return truncate(err.Error(), 128)
}

// apply writes status to every live presence the hook addresses, in every
// mesh (A.3-14), or stores it as pending when there is none (B.6.5). A
// manual dnd presence is left alone ("DND is sacred"; WriteStatus enforces
// it too). A presence that is now idle, or whose status changed, is woken
// wherever its socket is so the held next/low messages drain at once
// (B.4.2). ids are the addressed presences, for the log only.
func (h *hookHandler) apply(ctx context.Context, pid int, cwd string, st meshd.Status) (rep hookReply, ids []string, err error) {
	store := h.s.cfg.Store
	pres, err := store.HookPresences(ctx, pid, cwd)
	if err != nil {
		return hookReply{}, nil, err
	}
	if len(pres) == 0 {
		if err := store.AddPendingStatus(ctx, pid, cwd, st); err != nil {
			return hookReply{}, nil, err
		}
		return hookReply{OK: true, Pending: true}, nil, nil
	}
	woken := map[string]bool{}
	for _, p := range pres {
		ids = append(ids, p.ID)
		if p.Status == meshd.StatusDND && p.StatusSource == meshd.SourceManual {
			continue
		}
		changed, err := store.WriteStatus(ctx, p.ID, st, meshd.SourceHook, h.s.cfg.HookFreshWindow)
		if errors.Is(err, meshd.ErrNotFound) { // its mesh was deleted meanwhile
			continue
		}
		if err != nil {
			return hookReply{}, ids, err
		}
		if topic := meshd.PeerTopic(p.MeshID, p.RoutingPubkey()); (st == meshd.StatusIdle || changed) && !woken[topic] {
			woken[topic] = true
			h.wake(ctx, topic, p.ID)
		}
	}
	return hookReply{OK: true}, ids, nil
}

// wake publishes a wake-up for one presence's routing key; the replica
// holding its socket drains it. A lost wake-up only delays delivery until
// that replica's periodic re-drain, so it is logged, not returned.
func (h *hookHandler) wake(ctx context.Context, topic, presenceID string) {
	if err := h.s.cfg.Fanout.Publish(ctx, topic, nil); err != nil {
		h.s.log.Warn().Err(err).Str("presence_id", presenceID).Msg("hook wake-up")
	}
}

// maybeSweep forgets idle bucket keys at most every hookSweepEvery; the
// request that wins the compare-and-swap does it.
func (h *buckets) maybeSweep(now time.Time) {
	last := h.lastSweep.Load()
	if now.UnixNano()-last < int64(hookSweepEvery) || !h.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	h.rl.Sweep(hookKeyIdle, now)
	h.ipRL.Sweep(hookKeyIdle, now)
}
