package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/olahol/melody"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// handlerTimeout bounds the database work of one frame.
const handlerTimeout = 15 * time.Second

// onMessage runs on the socket's read loop, one frame at a time.
func (s *Server) onMessage(sess *melody.Session, data []byte) {
	c := s.connOf(sess)
	if c == nil || c.closing.Load() {
		return
	}
	var env wire.Envelope
	if err := json.Unmarshal(data, &env); err != nil || env.Type == "" {
		s.met.messagesRejected.WithLabelValues("parse_or_handler").Inc()
		msg := "frame is not a JSON object with a string type"
		if err != nil {
			msg = "invalid JSON: " + err.Error()
		}
		c.sendError("invalid_message", msg, "")
		return
	}
	if wire.HasNUL(data) {
		s.met.messagesRejected.WithLabelValues(wire.CodeInvalidString).Inc()
		c.sendError(wire.CodeInvalidString, wire.MsgInvalidString, env.ReqID)
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, handlerTimeout)
	defer cancel()
	_, _, authed := c.snapshot()
	switch env.Type {
	case wire.TypeHello, wire.TypeSessionHello:
		if authed {
			c.sendError("already_authenticated", "this socket already completed hello", env.ReqID)
			return
		}
		s.paceHello(c, env.Type, data)
		return
	}
	if !authed {
		c.sendError("no_hello", "must send hello first", env.ReqID)
		return
	}
	h, ok := s.frames[env.Type]
	if !ok && s.handleCollab(ctx, c, env.Type, data) {
		return
	}
	if !ok {
		c.sendError("unknown_message_type", "unknown message type: "+truncate(env.Type, 64), env.ReqID)
		return
	}
	if err := h(ctx, c, data, env.ReqID); err != nil {
		s.met.messagesRejected.WithLabelValues("parse_or_handler").Inc()
		var bad *badFrame
		if errors.As(err, &bad) {
			c.logger().Debug().Err(err).Str("type", env.Type).Msg("ws message rejected")
			c.sendError("invalid_message", bad.msg, env.ReqID)
			return
		}
		id := s.logInternal(c, err, env.Type)
		c.sendError("internal_error", "internal error (error id "+id+")", env.ReqID)
	}
}

// badFrame is a frame the client got wrong; its text is meant for the
// client. Every other handler error is ours: the client gets a generic
// internal_error with an error id and the log gets the details.
type badFrame struct{ msg string }

func (e *badFrame) Error() string { return e.msg }

// invalid returns a badFrame with a formatted text.
func invalid(format string, args ...any) error {
	return &badFrame{msg: fmt.Sprintf(format, args...)}
}

// logInternal logs err with a fresh error id and returns the id, which the
// client is told so an operator can find the line.
func (s *Server) logInternal(c *conn, err error, what string) string {
	id := meshd.NewID()[:12]
	c.logger().Error().Err(err).Str("error_id", id).Str("op", what).Msg("internal error")
	return id
}

type frameHandler func(ctx context.Context, c *conn, data []byte, reqID string) error

// handlers maps authenticated frame types to their handlers; the verbs
// of package verbs are answered through handleVerb (verbs_socket.go).
func (s *Server) handlers() map[string]frameHandler {
	m := map[string]frameHandler{
		wire.TypeSend:      s.handleSend,
		wire.TypeClientAck: s.handleClientAck,
		"set_status":       s.handleSetStatus,
		"set_summary":      s.handleSetSummary,
		"set_stats":        s.handleSetStats,
		"set_visible":      s.handleSetVisible,
		"set_profile":      s.handleSetProfile,
		"join_group":       s.handleJoinGroup,
		"leave_group":      s.handleLeaveGroup,
		"create_stream":    s.handleStreamVerb,
		"subscribe":        s.handleStreamVerb,
		"unsubscribe":      s.handleStreamVerb,
		"publish":          s.handleStreamVerb,
		"list_streams":     s.handleStreamVerb,
	}
	for _, typ := range s.verbs.Types() {
		m[typ] = s.handleVerb(typ)
	}
	return m
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// paceHello handles one hello or session_hello frame under admission
// pacing: at most Config.HelloConcurrency run at once on this replica, the
// others wait their turn in arrival order (a reconnect storm then queues
// instead of taking every database connection and timing out in the pool).
// A.3-9's deadline is met by the frame's arrival: a hello waiting for its
// turn or being handled is never closed hello_timeout; one that fails after
// the deadline passed is. A turn that does not come within handlerTimeout
// is answered internal_error and closed 1011 (the client retries).
func (s *Server) paceHello(c *conn, typ string, data []byte) {
	c.mu.Lock()
	c.helloBusy = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.helloBusy = false
		late := c.helloLate && !c.authed
		c.mu.Unlock()
		if late {
			c.close(wire.ReasonHelloTimeout, "")
		}
	}()
	wait := time.NewTimer(handlerTimeout)
	defer wait.Stop()
	select {
	case s.helloSlots <- struct{}{}:
	case <-c.ctx.Done():
		return // the socket closed while it waited
	case <-wait.C:
		s.internalError(c, errHelloQueue, "hello admission")
		return
	}
	func() {
		defer func() { <-s.helloSlots }()
		s.handleHelloFrame(c, typ, data)
	}()
	if f := c.afterHello; f != nil {
		c.afterHello = nil
		f()
	}
}

// handleHelloFrame runs one admitted hello or session_hello.
func (s *Server) handleHelloFrame(c *conn, typ string, data []byte) {
	if c.ctx.Err() != nil || c.closing.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, handlerTimeout)
	defer cancel()
	if typ == wire.TypeHello {
		s.handleHello(ctx, c, data)
	} else {
		s.handleSessionHello(ctx, c, data)
	}
}

// errHelloQueue: a hello waited handlerTimeout without getting its turn.
var errHelloQueue = errors.New("hello waited too long for admission")
