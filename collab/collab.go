// Package collab answers the 66 collaboration request types of the
// claudemesh wire protocol that are not part of meshd's core (topics,
// memory, tasks, contexts, skills, mesh_info, and typed fallbacks for the
// unsupported groups; docs/protocol.md Part C). It owns no resource: the
// rows live in PostgreSQL behind the Store interface (implemented by
// store.Store in store/collab_*.go) and pushes go out through the broker's
// Publisher. It does not import broker, store or fanout.
//
// The broker wires it in with one call per authenticated frame:
//
//	h, err := collab.New(collab.Config{Store: st, Publisher: pub})
//	...
//	if replies, ok := h.Handle(ctx, peer, env.Type, data); ok {
//		for _, r := range replies { c.send(r) }
//		return
//	}
//
// Handle returns ok=false for a type it does not own (collab.Types lists the
// 66 it owns), so the broker keeps its unknown_message_type answer for those.
// For an owned type it always returns at least one frame, built so that the
// 1.37 client resolves exactly the call that sent it (PROTOCOL-EXT E.14):
// the verb's own reply type echoing _reqId, or the typed fallback of E.14.5
// when a verb is unsupported, was rejected (bad input, not found, forbidden)
// or failed (database down). A rejection adds "code" and "error" fields to
// the typed reply; it is an `error` frame only where E.14.5 says so. Internal
// error text never reaches the client: it is logged with an error id that
// the frame carries.
//
// A `#<topic>` send stays in the broker's message path; the broker calls
// TopicSend to resolve, authorize and record it, and gets back the members
// to deliver to (see TopicSend).
package collab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
)

// Config configures New.
type Config struct {
	// Store holds every collaboration row. Required.
	Store Store
	// Publisher sends frames to the other sockets of a mesh on every
	// replica (share_context's state_change). Nil disables those pushes.
	Publisher Publisher
	// PublicURL is the broker's public HTTP base URL (BROKER_PUBLIC_URL),
	// the prefix of webhook URLs; "" gives URLs that are only the path.
	PublicURL string
	// Logger receives internal errors (with the error id sent to the
	// client); the zero value discards them.
	Logger zerolog.Logger
}

// Peer is the authenticated connection a frame came from. The broker fills
// it from the socket's presence and member rows.
type Peer struct {
	MeshID        string
	MemberID      string
	MemberPubkey  string // 64 hex, the member's ed25519 key
	SessionPubkey string // "" for a member-key (hello) connection
	PresenceID    string
	MemberName    string // mesh.member.display_name (authorship, E.4)
	DisplayName   string // the presence's effective name (mesh_info yourName)
	Admin         bool   // member role admin (may forget any memory)
	Groups        []meshd.Group
}

// Publisher pushes a frame to every socket of meshID on every replica except
// the presence excludePresenceID (the broker's state_change path, B.14.1).
type Publisher interface {
	PublishMesh(ctx context.Context, meshID string, frame any, excludePresenceID string) error
}

// Handler answers collaboration frames. It is safe for concurrent use.
type Handler struct {
	st  Store          // immutable after New
	pub Publisher      // immutable after New; may be nil
	log zerolog.Logger // immutable after New
	// publicURL prefixes webhook URLs, without a trailing slash.
	publicURL string
}

// New validates cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Store == nil {
		return nil, errors.New("collab: config: Store is required")
	}
	return &Handler{st: cfg.Store, pub: cfg.Publisher, log: cfg.Logger.With().Str("component", "collab").Logger(),
		publicURL: strings.TrimRight(cfg.PublicURL, "/")}, nil
}

// Handle answers one authenticated frame of type typ (raw is the whole
// frame). ok is false when typ is not one of Types(); otherwise replies
// holds the frames to send back to this socket, in order (never empty).
func (h *Handler) Handle(ctx context.Context, p Peer, typ string, raw []byte) (replies []any, ok bool) {
	v, ok := verbs[typ]
	if !ok {
		return nil, false
	}
	req, err := parseRequest(typ, raw)
	if err != nil {
		return rejection(req, err), true
	}
	if v.handle == nil {
		return frames(fallback(req)), true
	}
	if v.sealed && !h.st.SealsSecrets() {
		return frames(fallbackWithReason(req, noKeyReason)), true
	}
	out, err := v.handle(h, ctx, p, req)
	if err != nil {
		return h.failure(req, p, err), true
	}
	return out, true
}

// failure turns a handler error into the client frame: a *Error becomes its
// code and message; anything else is logged and reported as unavailable
// with an error id (A.3-24).
func (h *Handler) failure(req *request, p Peer, err error) []any {
	var ce *Error
	if errors.As(err, &ce) {
		return rejection(req, ce)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	h.log.Error().Err(err).Str("type", req.typ).Str("mesh", p.MeshID).Str("error_id", id).Msg("collab verb failed")
	return rejection(req, &Error{Code: "unavailable", Message: "the request could not be completed (error id " + id + ")"})
}
