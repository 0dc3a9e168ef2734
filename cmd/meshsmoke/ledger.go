package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/meshd/meshd/client"
)

// token identifies one DM of a traffic run; it is the message's plaintext,
// so a receiver can tell which send a push answers without trusting any
// broker-side id.
type token struct {
	From, To, Seq int
}

func (t token) String() string { return fmt.Sprintf("smoke %d>%d #%d", t.From, t.To, t.Seq) }

func parseToken(s string) (token, error) {
	var t token
	rest, ok := strings.CutPrefix(s, "smoke ")
	if !ok {
		return t, fmt.Errorf("not a smoke token: %q", s)
	}
	pair, seq, ok := strings.Cut(rest, " #")
	from, to, ok2 := strings.Cut(pair, ">")
	if !ok || !ok2 {
		return t, fmt.Errorf("not a smoke token: %q", s)
	}
	var err error
	if t.From, err = strconv.Atoi(from); err == nil {
		if t.To, err = strconv.Atoi(to); err == nil {
			t.Seq, err = strconv.Atoi(seq)
		}
	}
	if err != nil {
		return t, fmt.Errorf("not a smoke token: %q", s)
	}
	return t, nil
}

// receipt is what arrived for one token.
type receipt struct {
	firstID string
	count   int
}

// ledger accounts for every DM of a traffic run. The delivery contract it
// checks (A.3-4, docs/architecture.md "How a message moves"): every send acked with
// queued:true reaches its recipient; duplicates are allowed only with the
// same messageId; nothing reaches the wrong recipient or fails to decrypt.
// Sends that failed without an ack may or may not arrive.
type ledger struct {
	mu          sync.Mutex
	sent        int                // guarded by mu
	acked       map[token]string   // guarded by mu; token → ack messageId
	rejected    map[string]int     // guarded by mu; ack error → count
	failed      map[string]int     // guarded by mu; error class → count
	got         map[token]*receipt // guarded by mu
	dupOtherID  []string           // guarded by mu; examples
	misrouted   int                // guarded by mu
	undecodable int                // guarded by mu
}

func newLedger() *ledger {
	return &ledger{acked: map[token]string{}, rejected: map[string]int{}, failed: map[string]int{}, got: map[token]*receipt{}}
}

// sendResult records the outcome of one Send.
func (l *ledger) sendResult(t token, messageID string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	var ae *client.AckError
	switch {
	case err == nil:
		l.acked[t] = messageID
	case errors.As(err, &ae):
		l.rejected[ae.Reason]++
	default:
		l.failed[errClass(err)]++
	}
}

// errClass buckets send errors for the report.
func errClass(err error) string {
	var se *client.ServerError
	switch {
	case errors.Is(err, client.ErrConnectionLost):
		return "connection_lost"
	case errors.Is(err, client.ErrTimeout):
		return "timeout"
	case errors.Is(err, client.ErrClosed):
		return "closed"
	case errors.As(err, &se):
		return "error:" + se.Code
	default:
		return "other"
	}
}

// received records a push that receiver decoded.
func (l *ledger) received(receiver int, m client.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m.DecryptErr != nil {
		l.undecodable++
		return
	}
	t, err := parseToken(string(m.Plaintext))
	if err != nil || t.To != receiver {
		l.misrouted++
		return
	}
	r := l.got[t]
	if r == nil {
		l.got[t] = &receipt{firstID: m.Push.MessageID, count: 1}
		return
	}
	r.count++
	if r.firstID != m.Push.MessageID && len(l.dupOtherID) < 5 {
		l.dupOtherID = append(l.dupOtherID, fmt.Sprintf("%s: %s then %s", t, r.firstID, m.Push.MessageID))
	}
}

// missing returns the acked tokens that have not arrived, in order.
func (l *ledger) missing() []token {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []token
	for t := range l.acked {
		if l.got[t] == nil {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b token) int {
		if a.From != b.From {
			return a.From - b.From
		}
		return a.Seq - b.Seq
	})
	return out
}

// tally is a ledger's totals.
type tally struct {
	Sent, Acked, Received, Duplicates int
	UnackedReceived                   int // arrived although the send got no ack (allowed)
	Rejected, Failed                  map[string]int
	Missing                           []token
	MissingIDs                        []string
	DupOtherID                        []string
	IDMismatch                        []string // ack messageId ≠ push messageId
	Misrouted, Undecodable            int
}

func (l *ledger) tally() tally {
	miss := l.missing()
	l.mu.Lock()
	defer l.mu.Unlock()
	t := tally{Sent: l.sent, Acked: len(l.acked), Rejected: copyMap(l.rejected), Failed: copyMap(l.failed),
		Missing: miss, DupOtherID: slices.Clone(l.dupOtherID), Misrouted: l.misrouted, Undecodable: l.undecodable}
	for _, m := range miss {
		t.MissingIDs = append(t.MissingIDs, l.acked[m])
	}
	for tok, r := range l.got {
		t.Received++
		t.Duplicates += r.count - 1
		ackID, ok := l.acked[tok]
		switch {
		case !ok:
			t.UnackedReceived++
		case ackID != r.firstID && len(t.IDMismatch) < 5:
			t.IDMismatch = append(t.IDMismatch, fmt.Sprintf("%s: ack %s, push %s", tok, ackID, r.firstID))
		}
	}
	return t
}

func copyMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// problems lists every violation of the delivery contract; empty means
// the run passed.
func (t tally) problems() []string {
	var out []string
	if t.Acked == 0 {
		out = append(out, "no send was acked")
	}
	if n := len(t.Missing); n > 0 {
		ex := make([]string, 0, 3)
		for i := 0; i < min(n, 3); i++ {
			ex = append(ex, fmt.Sprintf("%s (messageId %s)", t.Missing[i], t.MissingIDs[i]))
		}
		out = append(out, fmt.Sprintf("%d acked messages never arrived, e.g. %s", n, strings.Join(ex, ", ")))
	}
	if len(t.DupOtherID) > 0 {
		out = append(out, "duplicate with a different messageId: "+strings.Join(t.DupOtherID, "; "))
	}
	if len(t.IDMismatch) > 0 {
		out = append(out, "push messageId differs from ack: "+strings.Join(t.IDMismatch, "; "))
	}
	if t.Misrouted > 0 {
		out = append(out, fmt.Sprintf("%d pushes reached the wrong member", t.Misrouted))
	}
	if t.Undecodable > 0 {
		out = append(out, fmt.Sprintf("%d pushes did not decrypt", t.Undecodable))
	}
	return out
}

// summary is the one-line traffic figure for the report.
func (t tally) summary() string {
	s := fmt.Sprintf("sent %d, acked %d, received %d, duplicates %d", t.Sent, t.Acked, t.Received, t.Duplicates)
	if t.UnackedReceived > 0 {
		s += fmt.Sprintf(" (+%d unacked that arrived)", t.UnackedReceived)
	}
	if len(t.Rejected) > 0 {
		s += ", rejected " + fmtCounts(t.Rejected)
	}
	if len(t.Failed) > 0 {
		s += ", send errors " + fmtCounts(t.Failed)
	}
	return s
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}
