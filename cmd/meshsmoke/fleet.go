package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd"
)

// fleet is a set of long-lived clients (AckPushes + Reconnect, through the
// load balancer, half pinned to each replica) sending DMs to each other at
// a steady rate, with every send and push accounted in a ledger.
type fleet struct {
	e     *env
	en    *enrolled
	peers []*peer // immutable after newFleet
	led   *ledger

	stopOnce  sync.Once
	stop      chan struct{}
	senders   sync.WaitGroup
	receivers sync.WaitGroup
}

// newFleet enrolls n members in a fresh mesh and connects them: even
// members pinned to replica a, odd to b; odd members use session_hello
// (the daemon's per-session presence), even ones a member-key hello.
func (e *env) newFleet(ctx context.Context, label string, n int) (*fleet, error) {
	en, err := e.enroll(ctx, label, n)
	if err != nil {
		return nil, err
	}
	f := &fleet{e: e, en: en, peers: make([]*peer, n), led: newLedger(), stop: make(chan struct{})}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.peers[i], errs[i] = e.dial(ctx, en, i, dialOpts{pin: replicaNames[i%2], session: i%2 == 1, reconnect: true})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.close()
		return nil, err
	}
	for _, p := range f.peers {
		f.receivers.Add(1)
		go f.receive(p)
	}
	return f, nil
}

func (f *fleet) receive(p *peer) {
	defer f.receivers.Done()
	for m := range p.c.Pushes() {
		if !m.System() {
			f.led.received(p.idx, m)
		}
	}
}

// startTraffic starts one sender per client: every 1/rate seconds a DM
// (priority now) to a random other client. A send issued while its socket
// is down waits for the reconnect (client.Config.RequestTimeout bounds it).
func (f *fleet) startTraffic(rate float64) {
	every := time.Duration(float64(time.Second) / rate)
	for _, p := range f.peers {
		f.senders.Add(1)
		go f.send(p, every)
	}
}

func (f *fleet) send(p *peer, every time.Duration) {
	defer f.senders.Done()
	rng := rand.New(rand.NewPCG(uint64(p.idx), uint64(time.Now().UnixNano())))
	select { // spread the senders over one period
	case <-time.After(time.Duration(rng.Int64N(int64(every)))):
	case <-f.stop:
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for seq := 0; ; seq++ {
		to := rng.IntN(len(f.peers) - 1)
		if to >= p.idx {
			to++
		}
		tok := token{From: p.idx, To: to, Seq: seq}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ack, err := p.c.Send(ctx, f.peers[to].c.Pubkey(), meshd.PriorityNow, []byte(tok.String()))
		cancel()
		f.led.sendResult(tok, ack.MessageID, err)
		select {
		case <-f.stop:
			return
		case <-t.C:
		}
	}
}

// stopTraffic stops the senders and waits for their last sends.
func (f *fleet) stopTraffic() {
	f.stopOnce.Do(func() { close(f.stop) })
	f.senders.Wait()
}

// waitDelivered waits until every acked DM has arrived and returns how
// long that took after the call.
func (f *fleet) waitDelivered(ctx context.Context, budget time.Duration) (time.Duration, error) {
	start := time.Now()
	err := waitFor(ctx, budget, nil, "every acked message to arrive", func(context.Context) bool {
		return len(f.led.missing()) == 0
	})
	return time.Since(start), err
}

// onNode returns the clients HAProxy currently pins to replica name.
func (f *fleet) onNode(name string) []*peer {
	var out []*peer
	for _, p := range f.peers {
		if f.e.node(p) == name {
			out = append(out, p)
		}
	}
	return out
}

// waitReattached waits until each of ps has lost its socket at or after
// since and completed a new hello, and returns since → the last hello_ack.
func waitReattached(ctx context.Context, ps []*peer, since time.Time, budget time.Duration) (time.Duration, error) {
	var last time.Time
	pending := 0
	err := waitFor(ctx, budget, nil, "clients to reattach", func(context.Context) bool {
		pending, last = 0, since
		for _, p := range ps {
			outs := outagesSince(p.links.Events(), since)
			if len(outs) == 0 || !outs[len(outs)-1].reattached() {
				pending++
				continue
			}
			if up := outs[len(outs)-1].Up; up.After(last) {
				last = up
			}
		}
		return pending == 0
	})
	if err != nil {
		return time.Since(since), fmt.Errorf("%d of %d clients not reattached %v after their replica went away%s", pending, len(ps), budget, sampleErr(ps, since))
	}
	return last.Sub(since), nil
}

// sampleErr describes why one not-yet-reattached client is down.
func sampleErr(ps []*peer, since time.Time) string {
	for _, p := range ps {
		evs := p.links.Events()
		if err := terminalErr(evs); err != nil {
			return fmt.Sprintf(" (client %d stopped: %v)", p.idx, err)
		}
		outs := outagesSince(evs, since)
		if len(outs) == 0 {
			return fmt.Sprintf(" (client %d never lost its socket)", p.idx)
		}
		if o := outs[len(outs)-1]; !o.reattached() {
			return fmt.Sprintf(" (client %d down since %v: %v)", p.idx, o.Down.Format("15:04:05.000"), o.Err)
		}
	}
	return ""
}

// maxOutage returns the longest reattached outage of any of ps since
// since, and how many outages there were.
func maxOutage(ps []*peer, since time.Time) (time.Duration, int) {
	var worst time.Duration
	n := 0
	for _, p := range ps {
		for _, o := range outagesSince(p.links.Events(), since) {
			n++
			if d := o.Up.Sub(o.Down); o.reattached() && d > worst {
				worst = d
			}
		}
	}
	return worst, n
}

// stopped lists clients that stopped for good (a terminal close).
func (f *fleet) stopped() []string {
	var out []string
	for _, p := range f.peers {
		if err := terminalErr(p.links.Events()); err != nil {
			out = append(out, fmt.Sprintf("client %d: %v", p.idx, err))
		}
	}
	return out
}

// lateAfter is how long after the last send an acked DM may take before
// the report calls it late: far more than a push takes, far less than the
// 30 s claim lease after which an unacked push is redelivered.
const lateAfter = 3 * time.Second

// delivery is how the tail of a traffic run arrived.
type delivery struct {
	tally
	Tail time.Duration // traffic stopped → last acked DM arrived (or gave up)
	Late int           // acked DMs still missing lateAfter after traffic stopped
}

func (d delivery) notes() []string {
	out := []string{d.summary(), "last acked arrived " + fmtDur(d.Tail) + " after traffic stopped"}
	if d.Late > 0 {
		out = append(out, fmt.Sprintf("%d acked arrived later than %v (redelivered after the claim lease?)", d.Late, lateAfter))
	}
	return out
}

// checkDelivery finishes a traffic run: stop sending, wait for the tail,
// and return what arrived and the contract violations.
func (f *fleet) checkDelivery(ctx context.Context, since time.Time, budget time.Duration) (delivery, []string) {
	f.stopTraffic()
	var d delivery
	stopped := time.Now()
	if _, err := f.waitDelivered(ctx, lateAfter); err != nil && ctx.Err() == nil {
		d.Late = len(f.led.missing())
		_, _ = f.waitDelivered(ctx, budget-lateAfter)
	}
	d.Tail = time.Since(stopped)
	d.tally = f.led.tally()
	probs := d.problems()
	if s := f.stopped(); len(s) > 0 {
		probs = append(probs, fmt.Sprintf("%d clients stopped for good: %s", len(s), strings.Join(s[:min(len(s), 3)], "; ")))
	}
	if s := f.detached(since); len(s) > 0 {
		probs = append(probs, fmt.Sprintf("%d clients lost their socket and never reattached: %s", len(s), strings.Join(s[:min(len(s), 3)], "; ")))
	}
	return d, probs
}

// detached lists clients whose last outage since since is still open.
func (f *fleet) detached(since time.Time) []string {
	var out []string
	for _, p := range f.peers {
		outs := outagesSince(p.links.Events(), since)
		if n := len(outs); n > 0 && !outs[n-1].reattached() {
			out = append(out, fmt.Sprintf("client %d down since %s: %v", p.idx, outs[n-1].Down.Format("15:04:05.000"), outs[n-1].Err))
		}
	}
	return out
}

func (f *fleet) close() {
	f.stopTraffic()
	var wg sync.WaitGroup
	for _, p := range f.peers {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.c.Close() }()
	}
	wg.Wait()
	f.receivers.Wait()
}
