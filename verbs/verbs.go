// Package verbs answers the WebSocket request/response verbs that need no
// socket: list_peers (docs/protocol.md B.6.8), message_status (B.4.4),
// shared state (B.14.1), scheduled messages (B.14.3), mesh clocks
// (B.14.4), grants on the member's own connection (A.3-31), the audit
// chain's audit_query and audit_verify (B.8) and the moderation verbs kick,
// disconnect, ban, unban and list_bans (B.6.10). Each reads or writes
// Postgres, may publish on the fan-out (closes travel as
// meshd.PresenceControl, state changes as meshd.MeshEvent), and returns the
// reply frame; the broker hands over the frame with who sent it (Peer) and
// writes the reply or the refusal (broker/verbs_socket.go). The verbs that
// change the socket's own state (send, status, groups, visibility,
// streams) stay in the broker.
package verbs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// Peer is who sent a frame: the connection's mesh (as of its hello),
// member and presence.
type Peer struct {
	Mesh     meshd.Mesh
	Member   meshd.Member
	Presence meshd.Presence
}

// Store is everything the verbs ask of the database (store.Store).
type Store interface {
	StateStore
	ScheduleStore
	ClockStore
	GrantsStore
	AuditLog
	ModerationStore
	MessageStore
}

// Publisher sends to every subscriber of a fan-out topic on every replica
// (fanout.Bus).
type Publisher interface {
	Publish(ctx context.Context, topic string, data []byte) error
}

// Auditor records audit-chain events (audit.Writer).
type Auditor interface {
	// Record makes ev durable for meshID's chain, returning once it is (or
	// when ctx ends; it is still written).
	Record(ctx context.Context, meshID string, ev meshd.AuditEvent)
	// Sync waits, briefly, until meshID's chain holds the events recorded
	// before the call.
	Sync(ctx context.Context, meshID string)
}

// Config configures a Handler.
type Config struct {
	Store     Store     // required
	Publisher Publisher // required
	Audit     Auditor   // required
	Logger    zerolog.Logger
	// MaxMessageBytes bounds what a schedule will queue, as a send's
	// (default 65536).
	MaxMessageBytes int
	Now             func() time.Time // default time.Now
}

// Handler answers the verbs of Types.
type Handler struct {
	cfg   Config
	verbs map[string]verb
}

type verb func(ctx context.Context, p Peer, data []byte, reqID string) (reply any, err error)

// New validates cfg.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("verbs: Store required")
	case cfg.Publisher == nil:
		return nil, errors.New("verbs: Publisher required")
	case cfg.Audit == nil:
		return nil, errors.New("verbs: Audit required")
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 65536
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{cfg: cfg}
	h.verbs = map[string]verb{
		"set_state": h.setState, "get_state": h.getState, "list_state": h.listState,
		"schedule": h.schedule, "list_scheduled": h.listScheduled, "cancel_scheduled": h.cancelScheduled,
		"set_clock": h.clockVerb, "pause_clock": h.clockVerb, "resume_clock": h.clockVerb, "get_clock": h.clockVerb,
		"get_grants": h.getGrants, "set_grants": h.setGrants,
		"audit_query": h.auditQuery, "audit_verify": h.auditVerify,
		wire.TypeListPeers: h.listPeers, wire.TypeMessageStatus: h.messageStatus,
		"kick": h.kick, "disconnect": h.disconnect, "ban": h.ban, "unban": h.unban, "list_bans": h.listBans,
	}
	return h, nil
}

// Types lists the frame types Handle answers, sorted.
func (h *Handler) Types() []string {
	var out []string
	for t := range h.verbs {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Handle answers one frame of type typ from p. reply is the frame to send
// back (nil: none, as for set_state); a *Refusal error is an error frame
// for the client, a *BadFrame an invalid_message; any other error is the
// broker's own (the client gets internal_error, the log the details).
func (h *Handler) Handle(ctx context.Context, p Peer, typ string, data []byte, reqID string) (reply any, err error) {
	v, ok := h.verbs[typ]
	if !ok {
		return nil, fmt.Errorf("verbs: no verb %q", typ)
	}
	return v(ctx, p, data, reqID)
}

// Refusal is an answer the client gets as an error frame {code, message}.
type Refusal struct{ Code, Message string }

func (r *Refusal) Error() string { return r.Code + ": " + r.Message }

func refuse(code, message string) error { return &Refusal{Code: code, Message: message} }

// BadFrame is a frame the client got wrong; Msg is meant for it.
type BadFrame struct{ Msg string }

func (e *BadFrame) Error() string { return e.Msg }

func invalid(format string, args ...any) error {
	return &BadFrame{Msg: fmt.Sprintf(format, args...)}
}

func decode(data []byte, v any, what string) error {
	if err := json.Unmarshal(data, v); err != nil {
		return invalid("invalid %s: %v", what, err)
	}
	return nil
}

// withReqID adds the request's _reqId to a reply (when it had one).
func withReqID(frame map[string]any, reqID string) map[string]any {
	if reqID != "" {
		frame["_reqId"] = reqID
	}
	return frame
}

// auditWait bounds how long a verb waits for its audit event to commit
// (the writer still writes it, in order).
const auditWait = 2 * time.Second

// audit records one audit-chain event of p's mesh with p's member as actor.
func (h *Handler) audit(ctx context.Context, p Peer, event string, payload map[string]any) {
	ctx, cancel := context.WithTimeout(ctx, auditWait)
	defer cancel()
	actor := p.Member.ID
	h.cfg.Audit.Record(ctx, p.Presence.MeshID, meshd.AuditEvent{EventType: event, ActorMemberID: &actor,
		ActorDisplayName: p.Presence.DisplayName, Payload: payload})
}
