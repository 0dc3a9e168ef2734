package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := summarize(d)
	if l.N != 100 || l.P50 != 50 || l.P95 != 95 || l.P99 != 99 || l.Max != 100 {
		t.Fatalf("1..100 ms: %+v", l)
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Fatalf("one sample: p99 %v", got)
	}
	if got := summarize(nil); got.N != 0 || got.String() != "-" {
		t.Fatalf("no samples: %+v", got)
	}
	// p99 of 10 samples is the largest, p50 the 5th.
	ten := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if percentile(ten, 99) != 10 || percentile(ten, 50) != 5 {
		t.Fatalf("ten: p99 %v p50 %v", percentile(ten, 99), percentile(ten, 50))
	}
}

func TestLedgerAccounting(t *testing.T) {
	l := newLedger()
	t0 := time.Now()
	for _, id := range []string{"a", "b", "c", "d"} {
		l.sending(t0)
		l.sent(t0, id, nil)
	}
	l.sending(t0)
	l.sent(t0, "", errors.New("client: send x not queued: rate_limit"))
	l.received("a", t0, t0.Add(10*time.Millisecond))
	l.received("b", t0, t0.Add(20*time.Millisecond))
	l.received("b", t0, t0.Add(30*time.Millisecond)) // duplicate
	l.received("b", t0, t0.Add(40*time.Millisecond)) // another
	l.received("z", t0, t0.Add(5*time.Millisecond))  // pushed, never acked
	if n := l.missing(); n != 2 {
		t.Fatalf("missing %d, want 2 (c, d)", n)
	}
	l.received("c", t0, t0.Add(50*time.Millisecond))
	d := l.delivery()
	want := Delivery{Attempted: 5, Acked: 4, Delivered: 3, Lost: 1, Duplicates: 2, Unacked: 1}
	if d.Attempted != want.Attempted || d.Acked != want.Acked || d.Delivered != want.Delivered ||
		d.Lost != want.Lost || d.Duplicates != want.Duplicates || d.Unacked != want.Unacked {
		t.Fatalf("delivery %+v, want %+v", d, want)
	}
	if d.SendErrors["client: send x not queued: rate_limit"] != 1 {
		t.Fatalf("send errors %v", d.SendErrors)
	}
	if d.Span < 0.049 || d.Span > 0.051 {
		t.Fatalf("span %v s, want 0.05", d.Span)
	}
	// Latency counts first pushes only: a 10, b 20, z 5, c 50.
	if e := l.e2e.summary(); e.N != 4 || e.Max != 50 || e.P50 != 10 {
		t.Fatalf("e2e %+v", e)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	b := payload(3, 41, at, 64)
	if len(b) != 64 || !strings.HasPrefix(string(b), "mb1 3 41 ") {
		t.Fatalf("payload %q", b)
	}
	got, ok := parsePayload(b)
	if !ok || !got.Equal(at) {
		t.Fatalf("parsed %v %v", got, ok)
	}
	if _, ok := parsePayload([]byte("hello")); ok {
		t.Fatal("foreign plaintext parsed")
	}
}

func TestParseVmRSS(t *testing.T) {
	n, err := parseVmRSS([]byte("Name:\tmeshd\nVmPeak:\t  9999 kB\nVmRSS:\t   20480 kB\nThreads: 9\n"))
	if err != nil || n != 20480*1024 {
		t.Fatalf("%d %v", n, err)
	}
	if _, err := parseVmRSS([]byte("Name: x\n")); err == nil {
		t.Fatal("no VmRSS accepted")
	}
}

func TestConfigValidation(t *testing.T) {
	var sb strings.Builder
	env := func(string) string { return "" }
	if _, err := parseConfig("burst", []string{"--url", "http://x"}, env, &sb); err == nil ||
		!strings.Contains(err.Error(), "ws://") || !strings.Contains(err.Error(), "--token") {
		t.Fatalf("bad url and no token: %v", err)
	}
	if _, err := parseConfig("storm", []string{"--url", "ws://x/ws", "--token", "t"}, env, &sb); err == nil {
		t.Fatal("storm without --kill-cmd accepted")
	}
	c, err := parseConfig("idle", []string{"--url", "ws://a/ws", "--url", "ws://b/ws", "--pid", "1,2"},
		func(k string) string { return map[string]string{"MESHBENCH_TOKEN": "tok"}[k] }, &sb)
	if err != nil || c.Token != "tok" || len(c.URLs) != 2 || len(c.PIDs) != 2 {
		t.Fatalf("%+v %v", c, err)
	}
}

// A duplicate is explained only when its recipient's socket closed
// between the two pushes (a higher socket generation).
func TestSplitDuplicates(t *testing.T) {
	l := newLedger()
	t0 := time.Now()
	for _, id := range []string{"a", "b", "c"} {
		l.sent(t0, id, nil)
	}
	// member 0: picks 1 (a), 2 (b); socket closes after 2 offered; picks
	// 3 (a again: explained); picks 4 (b again, same socket as 3 but
	// after b's first push on the old one: explained); picks 5 (b a third
	// time, same socket as pick 4: unexplained).
	l.receivedBy("a", t0, t0, pushAt{member: 0, pick: 1})
	l.receivedBy("b", t0, t0, pushAt{member: 0, pick: 2})
	l.receivedBy("a", t0, t0, pushAt{member: 0, pick: 3})
	l.receivedBy("b", t0, t0, pushAt{member: 0, pick: 4})
	l.receivedBy("b", t0, t0, pushAt{member: 0, pick: 5})
	l.receivedBy("c", t0, t0, pushAt{member: 1, pick: 1})
	l.receivedBy("c", t0, t0, pushAt{member: 1, pick: 2})
	bounds := map[int][]int64{0: {2}}
	epoch := func(m int, pick int64) int {
		e := 0
		for _, b := range bounds[m] {
			if b < pick {
				e++
			}
		}
		return e
	}
	d := l.delivery()
	l.splitDuplicates(&d, epoch)
	if d.Duplicates != 4 || d.Explained != 2 || d.Unexplained != 2 {
		t.Fatalf("duplicates %d explained %d unexplained %d, want 4 2 2", d.Duplicates, d.Explained, d.Unexplained)
	}
}
