package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// sender is the part of *client.Client a workload sends with.
type sender interface {
	Send(ctx context.Context, target string, p meshd.Priority, plaintext []byte) (wire.Ack, error)
}

// runBurst: cfg.Peers members each send cfg.Msgs DMs to random peers of
// their mesh, keeping up to cfg.Window sends unacked, then wait for every
// acked DM to be pushed.
func runBurst(ctx context.Context, b *bench) error {
	f, err := b.connect(ctx, b.cfg.Peers, fleetOpts{receive: true, reconnect: true})
	if err != nil {
		return err
	}
	b.logf("burst: %d peers × %d DMs, window %d", b.cfg.Peers, b.cfg.Msgs, b.cfg.Window)
	start := time.Now()
	var wg sync.WaitGroup
	for _, mb := range f.members {
		wg.Add(1)
		go func() { defer wg.Done(); burstPeer(ctx, b, f, mb) }()
	}
	wg.Wait()
	sendWall := time.Since(start)
	b.figure("sending", "%s (%.0f acked sends/s)", fmtDur(sendWall), float64(b.led.delivery().Acked)/sendWall.Seconds())
	return b.drain(ctx, start)
}

// burstPeer runs cfg.Window senders for one member, sharing its cfg.Msgs.
func burstPeer(ctx context.Context, b *bench, f *fleet, mb *member) {
	c := f.client(mb.idx)
	var next counter
	var wg sync.WaitGroup
	for w := 0; w < b.cfg.Window; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(mb.idx), uint64(w)))
			for seq := int(next.inc()) - 1; seq < b.cfg.Msgs && ctx.Err() == nil; seq = int(next.inc()) - 1 {
				to := f.members[peerOf(rng, f.members, mb)]
				sendDM(ctx, b, c, mb.idx, seq, to.key.Pubkey, time.Now())
			}
		}()
	}
	wg.Wait()
}

// peerOf picks a random other member of mb's mesh (members of a mesh
// are contiguous: cfg.MeshSize per mesh).
func peerOf(rng *rand.Rand, members []*member, mb *member) int {
	first := mb.idx - mb.slot
	size := 0
	for i := first; i < len(members) && members[i].mesh == mb.mesh; i++ {
		size++
	}
	k := rng.IntN(size - 1)
	if k >= mb.slot {
		k++
	}
	return first + k
}

// sendDM sends one encrypted DM and books it in the ledger; t is when it
// was meant to be sent (latencies count from it, so a late sender does
// not hide its own delay).
func sendDM(ctx context.Context, b *bench, c sender, from, seq int, to string, t time.Time) {
	b.led.sending(t)
	ack, err := c.Send(ctx, to, meshd.PriorityNow, payload(from, seq, t, b.cfg.Payload))
	b.led.sent(t, ack.MessageID, err)
}

// drain waits up to cfg.Drain for every acked DM to be pushed, then
// books the delivery figures.
func (b *bench) drain(ctx context.Context, start time.Time) error {
	deadline := time.Now().Add(b.cfg.Drain)
	for b.led.missing() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // let late duplicates show
	d := b.led.delivery()
	if n := b.getFleet().reconnects(); n > 0 {
		b.figure("client reconnects", "%d (sockets lost during the run)", n)
	}
	if n := b.getFleet().droppedPushes(); n > 0 {
		b.figure("pushes dropped", "%d by the load tool's full Pushes() buffers (unacked: redelivered)", n)
	}
	if d.Span > 0 {
		b.figure("throughput", "%.0f msg/s delivered (%d in %.2f s, first send → last push)", float64(d.Delivered)/d.Span, d.Delivered, d.Span)
	}
	if d.Lost > 0 {
		b.fail("%d acked DMs never pushed within %v of the last send", d.Lost, b.cfg.Drain)
	}
	if d.Duplicates > 0 {
		b.fail("%d duplicate pushes", d.Duplicates)
	}
	if n := d.Attempted - d.Acked; n > 0 {
		b.fail("%d sends not acked", n)
	}
	return ctx.Err()
}
