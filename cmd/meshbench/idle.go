package main

import (
	"context"
	"time"
)

// runIdle holds cfg.Conns authenticated connections for cfg.Hold and
// reports the brokers' RSS growth per connection.
func runIdle(ctx context.Context, b *bench) error {
	before := b.rss.sample()
	if _, err := b.connect(ctx, b.cfg.Conns, fleetOpts{}); err != nil {
		return err
	}
	b.logf("idle: holding %d connections for %s", b.cfg.Conns, b.cfg.Hold)
	select {
	case <-time.After(b.cfg.Hold):
	case <-ctx.Done():
		return ctx.Err()
	}
	after := b.rss.sample()
	if len(b.cfg.PIDs) == 0 {
		b.figure("rss per connection", "- (no --pid given)")
		return nil
	}
	per := float64(after-before) / float64(b.cfg.Conns)
	b.figure("rss per connection", "%.1f KB (%s before, %s with %d connections, %d broker PIDs)",
		per/1024, fmtBytes(before), fmtBytes(after), b.cfg.Conns, len(b.cfg.PIDs))
	if err := b.getFleet().stoppedErr(); err != nil {
		b.fail("%v", err)
	}
	return nil
}
