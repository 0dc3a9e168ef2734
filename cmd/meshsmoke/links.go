package main

import (
	"time"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/linklog"
)

// linkEvent is one connection lifecycle event of a client.
type linkEvent = linklog.Event

// newLinkLog records a client's connects (hello_ack), disconnects and
// terminal stop; Config.OnEvent feeds it from the client's supervisor.
func newLinkLog() *linklog.Log {
	return linklog.New(client.EventConnected, client.EventDisconnected, client.EventTerminal)
}

// outage is one lost socket and the hello_ack that ended it; Up is zero
// while the client has not reattached.
type outage struct {
	Down, Up time.Time
	Err      error // why the socket ended
}

func (o outage) reattached() bool { return !o.Up.IsZero() }

// outagesSince pairs each disconnect at or after since with the next
// connect. A terminal event ends the list with an open outage.
func outagesSince(evs []linkEvent, since time.Time) []outage {
	var out []outage
	open := false
	for _, e := range evs {
		if e.At.Before(since) {
			continue
		}
		switch e.Kind {
		case client.EventDisconnected:
			if !open {
				out = append(out, outage{Down: e.At, Err: e.Err})
				open = true
			}
		case client.EventConnected:
			if open {
				out[len(out)-1].Up = e.At
				open = false
			}
		case client.EventTerminal:
			if !open {
				out = append(out, outage{Down: e.At, Err: e.Err})
			}
			return out
		}
	}
	return out
}

// terminalErr returns the error of a terminal event, nil if none.
func terminalErr(evs []linkEvent) error {
	for _, e := range evs {
		if e.Kind == client.EventTerminal {
			return e.Err
		}
	}
	return nil
}
