package wire

import "errors"

// ErrInviteToken is wrapped by every DecodeInviteToken failure; the wrapping
// text says what was wrong (base64, JSON, version, field).
var ErrInviteToken = errors.New("invalid invite token")

// ErrInviteLink is wrapped by ParseInviteLink when the text is none of the
// accepted link forms.
var ErrInviteLink = errors.New("invalid invite link")

// ErrCanonicalJSON is wrapped by CanonicalJSON for values JSON cannot
// express (a malformed json.Number, an unsupported Go type).
var ErrCanonicalJSON = errors.New("not canonicalizable as JSON")
