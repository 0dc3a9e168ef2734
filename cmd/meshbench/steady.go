package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"
)

// maxInFlight bounds the open-loop sends of steady mode: past it the
// offered rate is not being absorbed and the run says so.
const maxInFlight = 20000

// runSteady offers cfg.Rate DMs/s for cfg.Duration, open loop (a send is
// started on schedule whether or not earlier ones were acked), each from
// a sender to a recipient connected to another URL when there are several.
func runSteady(ctx context.Context, b *bench) error {
	f, err := b.connect(ctx, b.cfg.Peers, fleetOpts{receive: true, reconnect: true})
	if err != nil {
		return err
	}
	pairs, err := crossPairs(f.members)
	if err != nil {
		return err
	}
	pairs = b.slowPairs(pairs, f.members)
	b.logf("steady: %.0f DMs/s for %s over %d sender→recipient pairs", b.cfg.Rate, b.cfg.Duration, len(pairs))
	if b.cfg.ReadyFile != "" {
		if err := os.WriteFile(b.cfg.ReadyFile, []byte(time.Now().Format(time.RFC3339Nano)+"\n"), 0o644); err != nil {
			return err
		}
	}
	var hostileDone chan *hostile
	if b.cfg.Hostile > 0 {
		hostileDone = make(chan *hostile, 1)
		go func() {
			h, err := runHostile(ctx, b, b.cfg.Hostile, b.cfg.Duration)
			if err != nil {
				b.fail("%v", err)
			}
			hostileDone <- h
		}()
	}
	b.throttle.on.Store(b.cfg.Slow > 0)
	start := time.Now()
	skipped, issued := offer(ctx, b, f, pairs, start)
	b.throttle.on.Store(false)
	if b.cfg.Slow > 0 {
		b.figure("slow consumers", "%d reading %d B/s while the load ran (then full speed)", b.cfg.Slow, b.cfg.SlowBPS)
	}
	if hostileDone != nil {
		if h := <-hostileDone; h != nil {
			h.report(b)
		}
	}
	if skipped > 0 {
		b.fail("%d scheduled sends skipped: more than %d in flight (the broker does not keep up with %.0f/s)", skipped, maxInFlight, b.cfg.Rate)
	}
	d := b.led.delivery()
	b.figure("offered", "%.0f msg/s for %s: %d sends issued in %s", b.cfg.Rate, b.cfg.Duration, d.Attempted, fmtDur(issued))
	b.figure("absorbed", "%.0f acked msg/s (acked sends over first send → last ack)", float64(d.Acked)/time.Since(start).Seconds())
	return b.drain(ctx, start)
}

// offer runs the schedule, waits for the sends, and returns how many it
// had to skip and how long issuing them took.
func offer(ctx context.Context, b *bench, f *fleet, pairs [][2]*member, start time.Time) (int, time.Duration) {
	every := time.Duration(float64(time.Second) / b.cfg.Rate)
	total := int(b.cfg.Duration / every)
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxInFlight)
	skipped := 0
	for k := 0; k < total && ctx.Err() == nil; k++ {
		at := start.Add(time.Duration(k) * every)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		select {
		case sem <- struct{}{}:
		default:
			skipped++
			continue
		}
		p := pairs[k%len(pairs)]
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			sendDM(ctx, b, f.client(p[0].idx), p[0].idx, k, p[1].key.Pubkey, at)
		}()
	}
	issued := time.Since(start)
	wg.Wait()
	return skipped, issued
}

// crossPairs pairs every member with a member of its mesh on another URL
// (on the same URL only when there is one URL).
func crossPairs(members []*member) ([][2]*member, error) {
	var out [][2]*member
	for _, from := range members {
		to := pickCross(members, from)
		if to == nil {
			return nil, fmt.Errorf("member %d has no peer in its mesh", from.idx)
		}
		out = append(out, [2]*member{from, to})
	}
	return out, nil
}

func pickCross(members []*member, from *member) *member {
	var same *member
	for k := 1; k < len(members); k++ {
		to := members[(from.idx+k)%len(members)]
		if to.mesh != from.mesh {
			continue
		}
		if to.urlIdx != from.urlIdx {
			return to
		}
		if same == nil {
			same = to
		}
	}
	return same
}

// slowPairs points every other sender that is not itself slow at a slow
// consumer of its mesh (round robin), when there are slow consumers.
func (b *bench) slowPairs(pairs [][2]*member, members []*member) [][2]*member {
	if b.cfg.Slow == 0 {
		return pairs
	}
	var slow []*member
	for _, m := range members {
		if b.slow(m.idx) {
			slow = append(slow, m)
		}
	}
	k := 0
	for i, p := range pairs {
		if b.slow(p[0].idx) || i%2 != 0 {
			continue
		}
		for range slow {
			to := slow[k%len(slow)]
			k++
			if to.mesh == p[0].mesh {
				pairs[i][1] = to
				break
			}
		}
	}
	return pairs
}
