package collab

import "errors"

// Error is a rejection the client sees: a stable code and a message that
// never carries internal error text.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func reject(code, msg string) *Error { return &Error{Code: code, Message: msg} }

func invalidArgs(msg string) *Error { return reject("invalid_args", msg) }

// Sentinels the Store returns (besides meshd.ErrNotFound and
// meshd.ErrAmbiguous).
var (
	// ErrNotClaimable: claim_task on a task that is not open.
	ErrNotClaimable = errors.New("task not open")
	// ErrForbidden: the caller may not change this row.
	ErrForbidden = errors.New("forbidden")
	// ErrExists: a unique name is already taken.
	ErrExists = errors.New("already exists")
	// ErrLimit: a per-member or per-mesh row cap is reached.
	ErrLimit = errors.New("limit reached")
)
