package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

func TestTokenRoundTrip(t *testing.T) {
	tok := token{From: 3, To: 17, Seq: 42}
	got, err := parseToken(tok.String())
	if err != nil || got != tok {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"", "hello", "smoke 1>2", "smoke a>2 #3", "smoke 1-2 #3"} {
		if _, err := parseToken(bad); err == nil {
			t.Errorf("parseToken(%q) accepted", bad)
		}
	}
}

func push(to int, tok token, id string) (int, client.Message) {
	return to, client.Message{Push: wire.Push{MessageID: id}, Plaintext: []byte(tok.String())}
}

func TestLedgerContract(t *testing.T) {
	l := newLedger()
	t1, t2, t3, t4 := token{0, 1, 0}, token{0, 1, 1}, token{1, 0, 0}, token{1, 0, 1}
	l.sendResult(t1, "m1", nil)
	l.sendResult(t2, "m2", nil)
	l.sendResult(t3, "", &client.AckError{ID: "x", Reason: "rate_limit"})
	l.sendResult(t4, "", errors.Join(client.ErrConnectionLost))
	l.received(push(1, t1, "m1"))
	l.received(push(1, t1, "m1")) // a redelivery: allowed
	l.received(push(0, t4, "m4")) // unacked but processed: allowed
	if got := l.missing(); len(got) != 1 || got[0] != t2 {
		t.Fatalf("missing %v", got)
	}
	tl := l.tally()
	if tl.Sent != 4 || tl.Acked != 2 || tl.Received != 2 || tl.Duplicates != 1 || tl.UnackedReceived != 1 ||
		tl.Rejected["rate_limit"] != 1 || tl.Failed["connection_lost"] != 1 {
		t.Fatalf("tally %+v", tl)
	}
	if p := tl.problems(); len(p) != 1 || !strings.Contains(p[0], "1 acked messages never arrived") || !strings.Contains(p[0], "m2") {
		t.Fatalf("problems %v", p)
	}

	l.received(push(1, t2, "m2"))
	if p := l.tally().problems(); len(p) != 0 {
		t.Fatalf("all delivered, yet problems %v", p)
	}
}

func TestLedgerViolations(t *testing.T) {
	l := newLedger()
	t1 := token{0, 1, 0}
	l.sendResult(t1, "m1", nil)
	l.received(push(1, t1, "m1"))
	l.received(push(1, t1, "other")) // duplicate under another id
	l.received(push(2, token{0, 1, 5}, "m9"))
	l.received(0, client.Message{DecryptErr: client.ErrDecrypt})
	p := strings.Join(l.tally().problems(), "\n")
	for _, want := range []string{"duplicate with a different messageId", "1 pushes reached the wrong member", "1 pushes did not decrypt"} {
		if !strings.Contains(p, want) {
			t.Errorf("problems lack %q:\n%s", want, p)
		}
	}

	l2 := newLedger()
	l2.sendResult(t1, "ack-id", nil)
	l2.received(push(1, t1, "push-id"))
	if p := strings.Join(l2.tally().problems(), "\n"); !strings.Contains(p, "push messageId differs from ack") {
		t.Errorf("id mismatch not reported: %s", p)
	}
	if p := newLedger().tally().problems(); len(p) != 1 || p[0] != "no send was acked" {
		t.Errorf("empty run: %v", p)
	}
}

func TestOutagesSince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	evs := []linkEvent{
		{Kind: client.EventConnected, At: at(0)},
		{Kind: client.EventDisconnected, At: at(1)}, // before since: ignored
		{Kind: client.EventConnected, At: at(2)},
		{Kind: client.EventDisconnected, At: at(10)},
		{Kind: client.EventConnected, At: at(12)},
		{Kind: client.EventDisconnected, At: at(20)},
	}
	got := outagesSince(evs, at(5))
	if len(got) != 2 || got[0].Down != at(10) || got[0].Up != at(12) || got[1].reattached() {
		t.Fatalf("%+v", got)
	}
	if got := outagesSince(evs, at(30)); len(got) != 0 {
		t.Fatalf("nothing after since: %+v", got)
	}
	stop := errors.New("banned")
	term := append(evs[:4:4], linkEvent{Kind: client.EventTerminal, At: at(11), Err: stop})
	got = outagesSince(term, at(5))
	if len(got) != 1 || got[0].reattached() || terminalErr(term) != stop {
		t.Fatalf("terminal: %+v", got)
	}
}

func TestLinkLogKeepsLifecycleOnly(t *testing.T) {
	l := newLinkLog()
	l.Record(client.Event{Kind: client.EventConnected})
	l.Record(client.Event{Kind: client.EventReconnecting})
	l.Record(client.Event{Kind: client.EventReconnectFailed})
	l.Record(client.Event{Kind: client.EventDisconnected})
	if evs := l.Events(); len(evs) != 2 || evs[0].Kind != client.EventConnected || evs[1].Kind != client.EventDisconnected {
		t.Fatalf("%+v", evs)
	}
}
