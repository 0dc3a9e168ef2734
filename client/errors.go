package client

import (
	"errors"
	"fmt"

	"github.com/meshd/meshd/wire"
)

// ErrInvalidKey means a public key is malformed or is not a usable ed25519
// point (not on the curve, small order, outside the prime-order subgroup).
var ErrInvalidKey = errors.New("client: invalid key")

// ErrDecrypt means a message body could not be decoded or did not
// authenticate with any of our keys.
var ErrDecrypt = errors.New("client: cannot decrypt")

// ErrTopicKey means a topic post is sealed with the topic's own key
// (bodyVersion 2, docs/protocol.md C.2.4), which the client does not hold.
// It wraps ErrDecrypt.
var ErrTopicKey = fmt.Errorf("%w: a topic post sealed with the topic's key (bodyVersion 2)", ErrDecrypt)

// ErrClosed is returned by calls on a Client that has stopped, after Close
// or a terminal error (Err says which).
var ErrClosed = errors.New("client: closed")

// ErrHelloTimeout means no hello_ack arrived within Config.HelloTimeout.
var ErrHelloTimeout = errors.New("client: no hello_ack before timeout")

// ErrTimeout means a send or request got no response within
// Config.RequestTimeout.
var ErrTimeout = errors.New("client: response timeout")

// ErrConnectionLost means the socket a request was written to died before
// its response arrived. The request may or may not have been processed.
var ErrConnectionLost = errors.New("client: connection lost")

// ErrStale means nothing (message, ping or pong) arrived for
// Config.StaleAfter and the socket was terminated (B.1 client liveness).
var ErrStale = errors.New("client: connection stale")

// Close codes that end a client for good (B.1): no reconnect.
const (
	CloseKicked = 4001
	CloseBanned = 4002
)

// terminalClose reports whether a close frame forbids reconnecting: 4001
// and 4002 always (B.1, as upstream's client), plus the closes that the
// broker's reason table (wire.Reason.Terminal) marks terminal because
// retrying the same handshake cannot succeed (bad_signature, unauthorized,
// …) or another socket took the session over (session_replaced).
func terminalClose(code int, text string) bool {
	if code == CloseKicked || code == CloseBanned {
		return true
	}
	r, ok := wire.FromClose(code, text)
	return ok && r.Terminal()
}

// RejectedError is a hello or session_hello the broker refused (B.2, B.3):
// the error frame's code and message and the close frame that followed.
// Fields are empty/zero when that part never arrived.
type RejectedError struct {
	Code        string
	Message     string
	CloseCode   int
	CloseReason string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("client: hello rejected: %s (%s), close %d %q", e.Code, e.Message, e.CloseCode, e.CloseReason)
}

// Terminal reports whether reconnecting is pointless (see terminalClose):
// a revoked member (4002), a bad signature, an unknown member, ….
func (e *RejectedError) Terminal() bool { return terminalClose(e.CloseCode, e.CloseReason) }

// CloseError is an established connection closed by the broker.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("client: connection closed: %d %q", e.Code, e.Reason)
}

// Terminal reports whether the close forbids reconnecting (4001 kicked,
// 4002 banned, 1000 session_replaced; see terminalClose).
func (e *CloseError) Terminal() bool { return terminalClose(e.Code, e.Reason) }

// ServerError is an error frame answering a request (B.1).
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("client: broker error %s: %s", e.Code, e.Message)
}

// AckError is an ack that did not queue the message (B.4.1: queued false;
// Reason is ack.error, e.g. "rate_limit: …" or "no connected peer …").
type AckError struct {
	ID     string
	Reason string
}

func (e *AckError) Error() string {
	return fmt.Sprintf("client: send %s not queued: %s", e.ID, e.Reason)
}

// isTerminal reports whether err ends the client even with Reconnect set.
func isTerminal(err error) bool {
	var t interface{ Terminal() bool }
	return errors.As(err, &t) && t.Terminal()
}
