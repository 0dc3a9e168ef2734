package main

import (
	"time"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/linklog"
)

// linkEvent is one connection lifecycle event of a client.
type linkEvent = linklog.Event

// reattach is what happened to one client after a kill: when it lost its
// socket, when it was back (zero if not), and its failed attempts.
type reattach struct {
	Down, Up time.Time
	Failures []error
}

// reattachOf reads a client's events since t: the first disconnect, the
// first connect after it, and the reconnect failures in between. ok is
// false when the client did not lose its socket.
func reattachOf(evs []linkEvent) (r reattach, ok bool) {
	for _, e := range evs {
		switch {
		case e.Kind == client.EventDisconnected && !ok:
			r.Down, ok = e.At, true
		case !ok:
		case e.Kind == client.EventConnected && r.Up.IsZero():
			r.Up = e.At
		case (e.Kind == client.EventReconnectFailed || e.Kind == client.EventTerminal) && r.Up.IsZero():
			r.Failures = append(r.Failures, e.Err)
		}
	}
	return r, ok
}
