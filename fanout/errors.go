package fanout

import "errors"

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("fanout: bus closed")

// ErrBadTopic is returned for a topic that is not a dot-separated list of
// non-empty tokens free of whitespace, control characters and the NATS
// wildcards '*' and '>'. A wildcard would let one peer's subscription
// receive another peer's pushes, so it is rejected rather than escaped.
var ErrBadTopic = errors.New("fanout: bad topic")

// ErrNotConnected is returned by Ping while the NATS connection is down
// (reconnecting): health must fail fast rather than wait for a timeout.
var ErrNotConnected = errors.New("fanout: not connected to nats")

// ErrInconsistent is wrapped by ConsistencyCheck failures.
var ErrInconsistent = errors.New("fanout: inconsistent state")
