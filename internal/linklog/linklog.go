// Package linklog records the connection lifecycle of Go clients (their
// Config.OnEvent) with the time of each event, for the load and smoke tools
// (cmd/meshbench, cmd/meshsmoke) to measure outages and reattaches.
package linklog

import (
	"slices"
	"sync"
	"time"

	"github.com/meshd/meshd/client"
)

// Event is one lifecycle event of a client.
type Event struct {
	Kind client.EventKind
	At   time.Time
	Err  error
}

// Log is one client's events, safe for concurrent use.
type Log struct {
	kinds []client.EventKind // recorded kinds; empty: all
	mu    sync.Mutex
	ev    []Event // guarded by mu
}

// New returns a Log that keeps the events of the given kinds (none given:
// every event).
func New(kinds ...client.EventKind) *Log { return &Log{kinds: kinds} }

// Record is the client's Config.OnEvent.
func (l *Log) Record(ev client.Event) {
	if len(l.kinds) > 0 && !slices.Contains(l.kinds, ev.Kind) {
		return
	}
	l.mu.Lock()
	l.ev = append(l.ev, Event{Kind: ev.Kind, At: time.Now(), Err: ev.Err})
	l.mu.Unlock()
}

// Since returns a copy of the events at or after t, oldest first.
func (l *Log) Since(t time.Time) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Event
	for _, e := range l.ev {
		if !e.At.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// Events returns a copy of every event, oldest first.
func (l *Log) Events() []Event { return l.Since(time.Time{}) }
