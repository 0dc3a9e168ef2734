package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// bench is the state of one run, shared by the modes and the report.
type bench struct {
	cfg   Config
	runID string
	logf  func(string, ...any)
	start time.Time
	led   *ledger
	rss   *rssSampler
	// throttle slows the slow consumers' reads (steady --slow).
	throttle throttle

	mu      sync.Mutex
	fleet   *fleet            // guarded by mu
	dial    dialStats         // guarded by mu
	figures map[string]string // guarded by mu; mode-specific results
	order   []string          // guarded by mu; figure keys in insertion order
	problem []string          // guarded by mu; contract violations
	hostile *HostileStats     // guarded by mu; steady --hostile
}

func newBench(cfg Config, stderr io.Writer) *bench {
	b := &bench{cfg: cfg, runID: newRunID(), start: time.Now(), led: newLedger(), figures: map[string]string{}}
	var mu sync.Mutex
	b.logf = func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stderr, "meshbench [%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, a...))
	}
	b.rss = newRSSSampler(cfg.PIDs)
	b.throttle.bps = cfg.SlowBPS
	if cfg.Disrupt > 0 {
		b.led.disruptAfter = cfg.Disrupt
	}
	return b
}

// execute runs mode with the RSS sampler and progress lines around it.
func (b *bench) execute(ctx context.Context, mode func(context.Context, *bench) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := b.rss.check(); err != nil {
		return err
	}
	go b.rss.run(ctx, 250*time.Millisecond)
	go b.progress(ctx)
	b.logf("%s: %d URL(s), run %s", b.cfg.Mode, len(b.cfg.URLs), b.runID)
	return mode(ctx, b)
}

// progress prints a line every cfg.Progress until ctx ends.
func (b *bench) progress(ctx context.Context) {
	t := time.NewTicker(b.cfg.Progress)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		att, acked, pushed := b.led.counts()
		conns := 0
		if f := b.getFleet(); f != nil {
			conns = int(f.up.Load())
		}
		line := fmt.Sprintf("conns %d | sends %d acked %d pushed %d", conns, att, acked, pushed)
		if rss, ok := b.rss.current(); ok {
			line += fmt.Sprintf(" | broker RSS %s", fmtBytes(rss))
		}
		b.logf("%s", line)
	}
}

func (b *bench) setFleet(f *fleet) {
	b.mu.Lock()
	b.fleet = f
	b.mu.Unlock()
}

func (b *bench) getFleet() *fleet {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fleet
}

// figure records a mode-specific result for the report.
func (b *bench) figure(key, format string, a ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.figures[key]; !ok {
		b.order = append(b.order, key)
	}
	b.figures[key] = fmt.Sprintf(format, a...)
}

// fail records a violated contract (lost, duplicate, not reattached…).
func (b *bench) fail(format string, a ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problem = append(b.problem, fmt.Sprintf(format, a...))
}

func (b *bench) close() {
	if f := b.getFleet(); f != nil {
		f.close()
	}
}

// connect enrolls n members and dials them all, recording hello rate.
func (b *bench) connect(ctx context.Context, n int, opts fleetOpts) (*fleet, error) {
	members, err := enroll(ctx, b.cfg, b.runID, n, b.logf)
	if err != nil {
		return nil, err
	}
	f := newFleet(b, members, opts)
	b.setFleet(f)
	ds, err := f.dialAll(ctx)
	b.mu.Lock()
	b.dial = ds
	b.mu.Unlock()
	if err != nil {
		return nil, err
	}
	b.logf("connected %d clients in %s: %.0f hellos/s (%d dials in flight)", ds.OK, fmtDur(ds.Wall), ds.rate(), b.cfg.Dials)
	return f, nil
}

// dialStats is the connect phase: successful hellos over its wall time.
type dialStats struct {
	OK     int           `json:"ok"`
	Failed int           `json:"failed"`
	Wall   time.Duration `json:"-"`
	Hello  *samples      `json:"-"`
}

func (d dialStats) rate() float64 {
	if d.Wall <= 0 {
		return 0
	}
	return float64(d.OK) / d.Wall.Seconds()
}

// counter is a tiny helper for concurrent tallies.
type counter struct{ n atomic.Int64 }

func (c *counter) inc() int64 { return c.n.Add(1) }
