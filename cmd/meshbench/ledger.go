package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// samples collects durations; percentiles are exact (nearest rank over
// the sorted samples), which is fine for the ≤ a few 100k of a run.
type samples struct {
	mu sync.Mutex
	d  []time.Duration // guarded by mu
}

func (s *samples) add(d time.Duration) {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
}

// Latency is a distribution summary in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func (s *samples) summary() Latency {
	s.mu.Lock()
	d := slices.Clone(s.d)
	s.mu.Unlock()
	return summarize(d)
}

// summarize sorts d and returns its nearest-rank percentiles.
func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	return Latency{N: len(d), P50: ms(percentile(d, 50)), P95: ms(percentile(d, 95)), P99: ms(percentile(d, 99)), Max: ms(d[len(d)-1])}
}

// percentile is the nearest-rank percentile p (0 < p ≤ 100) of sorted d.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (l Latency) String() string {
	if l.N == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %s p95 %s p99 %s max %s", fmtMS(l.P50), fmtMS(l.P95), fmtMS(l.P99), fmtMS(l.Max))
}

// ledger accounts for every DM of a run: sends that were acked
// (queued:true) by messageId, pushes received by messageId, and the
// latencies. It is what "lost" and "duplicates" are computed from.
type ledger struct {
	mu     sync.Mutex
	acked  map[string]time.Time // messageId → scheduled send time of an acked DM; guarded by mu
	pushes map[string]int       // messageId → pushes received; guarded by mu
	// where records, per messageId, the recipient and pickup index of
	// each push (see epochs); guarded by mu.
	where map[string][]pushAt
	// lastBad is the latest scheduled send time of a disrupted DM: send
	// failed, or first push more than disruptAfter after it was
	// scheduled; guarded by mu.
	lastBad      time.Time
	disruptAfter time.Duration
	attempts     int            // guarded by mu
	sendErrs     map[string]int // error text → count; guarded by mu
	first        time.Time      // first send; guarded by mu
	last         time.Time      // last push of a DM; guarded by mu

	e2e samples // send → push, from the timestamp inside the plaintext
	ack samples // send → ack
}

func newLedger() *ledger {
	return &ledger{acked: map[string]time.Time{}, pushes: map[string]int{}, sendErrs: map[string]int{},
		where: map[string][]pushAt{}, disruptAfter: time.Second}
}

// pushAt is one push as its recipient picked it from Pushes(): the
// member index and the 1-based count of messages that member had picked.
type pushAt struct {
	member int
	pick   int64
}

// bad books a disrupted DM scheduled at t; the caller holds mu.
func (l *ledger) bad(t time.Time) {
	if t.After(l.lastBad) {
		l.lastBad = t
	}
}

// sending records an attempt at t.
func (l *ledger) sending(t time.Time) {
	l.mu.Lock()
	l.attempts++
	if l.first.IsZero() || t.Before(l.first) {
		l.first = t
	}
	l.mu.Unlock()
}

// sent records the outcome of one send issued at t.
func (l *ledger) sent(t time.Time, messageID string, err error) {
	if err != nil {
		l.mu.Lock()
		l.sendErrs[errKey(err)]++
		l.bad(t)
		l.mu.Unlock()
		return
	}
	l.ack.add(time.Since(t))
	l.mu.Lock()
	l.acked[messageID] = t
	l.mu.Unlock()
}

// errKey shortens an error to a stable category for the report.
func errKey(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, "\n"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// received records a push of a bench DM whose plaintext carried sentAt.
func (l *ledger) received(messageID string, sentAt, at time.Time) {
	l.receivedBy(messageID, sentAt, at, pushAt{member: -1})
}

// receivedBy is received with where the push was picked up (see epochs).
func (l *ledger) receivedBy(messageID string, sentAt, at time.Time, w pushAt) {
	l.mu.Lock()
	l.pushes[messageID]++
	n := l.pushes[messageID]
	if w.member >= 0 {
		l.where[messageID] = append(l.where[messageID], w)
	}
	if at.After(l.last) {
		l.last = at
	}
	if n == 1 && at.Sub(sentAt) > l.disruptAfter {
		l.bad(sentAt)
	}
	l.mu.Unlock()
	if n == 1 {
		l.e2e.add(at.Sub(sentAt))
	}
}

// Delivery is the ledger's verdict.
type Delivery struct {
	Attempted  int            `json:"attempted"`
	Acked      int            `json:"acked"`
	Delivered  int            `json:"delivered"`        // acked and pushed at least once
	Lost       int            `json:"lost"`             // acked, never pushed
	Duplicates int            `json:"duplicates"`       // pushes beyond the first, by messageId
	Unacked    int            `json:"pushed_unacked"`   // pushed, but the sender saw no ack
	SendErrors map[string]int `json:"send_errors"`      // by error text
	Span       float64        `json:"span_s,omitempty"` // first send → last push
	// Explained duplicates: the recipient's socket closed between the
	// first push of the messageId and this one (see docs/chaos.md);
	// Unexplained: every other duplicate. Set by splitDuplicates.
	Explained      int      `json:"duplicates_explained"`
	Unexplained    int      `json:"duplicates_unexplained"`
	UnexplainedIDs []string `json:"unexplained_ids,omitempty"` // up to 10, for the logs
	// LastDisrupted is the scheduled send time (unix ms) of the latest DM
	// whose send failed, that was lost, or whose first push came more
	// than the disruption threshold after it was scheduled; 0 if none.
	LastDisrupted int64 `json:"last_disrupted_unix_ms"`
}

func (l *ledger) delivery() Delivery {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := Delivery{Attempted: l.attempts, Acked: len(l.acked), SendErrors: maps.Clone(l.sendErrs)}
	lastBad := l.lastBad
	for id, t := range l.acked {
		if l.pushes[id] > 0 {
			d.Delivered++
		} else {
			d.Lost++
			if t.After(lastBad) {
				lastBad = t
			}
		}
	}
	for id, n := range l.pushes {
		d.Duplicates += n - 1
		if _, ok := l.acked[id]; !ok {
			d.Unacked++
		}
	}
	if !lastBad.IsZero() {
		d.LastDisrupted = lastBad.UnixMilli()
	}
	if !l.first.IsZero() && l.last.After(l.first) {
		d.Span = l.last.Sub(l.first).Seconds()
	}
	return d
}

// splitDuplicates sorts d's duplicates into explained and unexplained:
// a push of a messageId beyond the first is explained when epoch (the
// recipient's socket generation at a pickup, see fleet.epoch) is higher
// than at the previous push of that messageId, i.e. the recipient's
// socket closed in between and the broker redelivered what it had not
// seen acknowledged. Pushes without a recorded pickup are unexplained.
func (l *ledger) splitDuplicates(d *Delivery, epoch func(member int, pick int64) int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, n := range l.pushes {
		if n < 2 {
			continue
		}
		w := l.where[id]
		for k := 1; k < n; k++ {
			if k < len(w) && w[k].member == w[k-1].member && epoch(w[k].member, w[k].pick) > epoch(w[k-1].member, w[k-1].pick) {
				d.Explained++
				continue
			}
			d.Unexplained++
			if len(d.UnexplainedIDs) < 10 {
				d.UnexplainedIDs = append(d.UnexplainedIDs, id)
			}
		}
	}
}

// missing is how many acked DMs have not been pushed yet.
func (l *ledger) missing() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for id := range l.acked {
		if l.pushes[id] == 0 {
			n++
		}
	}
	return n
}

// counts is a cheap snapshot for progress lines.
func (l *ledger) counts() (attempts, acked, pushed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.attempts, len(l.acked), len(l.pushes)
}

// payload is a DM's plaintext: a header the receiver parses (sender,
// sequence, send time in unix ns) padded to size bytes.
func payload(from, seq int, at time.Time, size int) []byte {
	b := []byte(fmt.Sprintf("mb1 %d %d %d ", from, seq, at.UnixNano()))
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// parsePayload returns the send time carried by a bench DM.
func parsePayload(b []byte) (time.Time, bool) {
	f := strings.Fields(string(b))
	if len(f) < 4 || f[0] != "mb1" {
		return time.Time{}, false
	}
	ns, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}
