package linklog

import (
	"testing"
	"time"

	"github.com/meshd/meshd/client"
)

func TestLogKeepsTheKindsAsked(t *testing.T) {
	t.Parallel()
	l := New(client.EventConnected, client.EventDisconnected, client.EventTerminal)
	all := New()
	for _, k := range []client.EventKind{client.EventConnected, client.EventReconnecting, client.EventReconnectFailed, client.EventDisconnected} {
		l.Record(client.Event{Kind: k})
		all.Record(client.Event{Kind: k})
	}
	if evs := l.Events(); len(evs) != 2 || evs[0].Kind != client.EventConnected || evs[1].Kind != client.EventDisconnected {
		t.Fatalf("lifecycle log = %+v", evs)
	}
	if evs := all.Events(); len(evs) != 4 {
		t.Fatalf("log of every kind = %+v", evs)
	}
}

func TestSinceIsInclusiveAndACopy(t *testing.T) {
	t.Parallel()
	l := New()
	l.Record(client.Event{Kind: client.EventConnected})
	mid := time.Now()
	l.Record(client.Event{Kind: client.EventDisconnected})
	got := l.Since(l.Events()[1].At)
	if len(got) != 1 || got[0].Kind != client.EventDisconnected || got[0].At.Before(mid) {
		t.Fatalf("since the second event = %+v", got)
	}
	got[0].Kind = client.EventTerminal
	if l.Events()[1].Kind != client.EventDisconnected {
		t.Fatal("Since returned the log's own slice")
	}
}
