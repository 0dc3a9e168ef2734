package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/meshd/meshd/client"
)

// runStorm connects cfg.Conns reconnecting clients, runs cfg.KillCmd, and
// measures how long the clients that lost their socket take to be back.
func runStorm(ctx context.Context, b *bench) error {
	f, err := b.connect(ctx, b.cfg.Conns, fleetOpts{reconnect: true})
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // let presence writes settle before the kill
	b.logf("storm: running kill command %q", b.cfg.KillCmd)
	killedAt := time.Now()
	out, err := exec.CommandContext(ctx, "sh", "-c", b.cfg.KillCmd).CombinedOutput()
	if err != nil {
		return fmt.Errorf("--kill-cmd: %v: %s", err, strings.TrimSpace(string(out)))
	}
	waitReattached(ctx, b, f, killedAt)
	stormFigures(b, f, killedAt)
	return ctx.Err()
}

// waitReattached polls until every client that lost its socket since t
// is back, or cfg.Reattach passes.
func waitReattached(ctx context.Context, b *bench, f *fleet, t time.Time) {
	deadline := t.Add(b.cfg.Reattach)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		if time.Since(t) > 2*time.Second && int(f.up.Load()) == len(f.members) {
			return
		}
	}
}

// stormFigures summarizes the reattachments since the kill.
func stormFigures(b *bench, f *fleet, killedAt time.Time) {
	var times samples
	lost, back, helloTimeouts, failures := 0, 0, 0, 0
	kinds := map[string]int{}
	var lastUp time.Time
	for _, l := range f.links {
		r, ok := reattachOf(l.Since(killedAt))
		if !ok {
			continue
		}
		lost++
		failures += len(r.Failures)
		for _, e := range r.Failures {
			if isHelloTimeout(e) {
				helloTimeouts++
			}
			if e != nil {
				kinds[errKey(e)]++
			}
		}
		if !r.Up.IsZero() {
			back++
			times.add(r.Up.Sub(killedAt))
			lastUp = maxTime(lastUp, r.Up)
		}
	}
	b.figure("clients that lost their socket", "%d of %d", lost, len(f.members))
	b.figure("reattached", "%d of %d", back, lost)
	b.figure("kill → reattached", "%s", times.summary())
	b.figure("failed reconnect attempts", "%d (%d hello timeouts) %s", failures, helloTimeouts, topKinds(kinds, 3))
	if !lastUp.IsZero() {
		b.figure("all reattached after", "%s", fmtDur(lastUp.Sub(killedAt)))
	}
	if lost == 0 {
		b.fail("the kill command disconnected no client")
	}
	if back < lost {
		b.fail("%d clients not reattached within %v", lost-back, b.cfg.Reattach)
	}
	if helloTimeouts > 0 {
		b.fail("%d reconnect attempts ended in a hello timeout", helloTimeouts)
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// isHelloTimeout: the broker closed the socket with hello_timeout, or the
// client gave up waiting for hello_ack.
func isHelloTimeout(err error) bool {
	return err != nil && (errors.Is(err, client.ErrHelloTimeout) || strings.Contains(err.Error(), "hello_timeout"))
}

// topKinds renders the n most frequent error texts.
func topKinds(kinds map[string]int, n int) string {
	keys := slices.Collect(maps.Keys(kinds))
	slices.SortFunc(keys, func(a, b string) int { return kinds[b] - kinds[a] })
	var parts []string
	for _, k := range keys[:min(n, len(keys))] {
		parts = append(parts, fmt.Sprintf("%d× %s", kinds[k], k))
	}
	return strings.Join(parts, "; ")
}
