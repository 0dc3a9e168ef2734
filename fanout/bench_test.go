package fanout

import (
	"context"
	"sync/atomic"
	"testing"
)

// BenchmarkPublish measures the wake-up of the delivery road (a DM's
// announce, broker/delivery.go): one replica publishes on a peer topic,
// another replica's subscription receives it, through an embedded NATS
// server. "round_trip" waits for each delivery before the next publish (the
// latency a quiet recipient sees); "pipelined" publishes wake-ups back to
// back and waits for every 1,024th (what a burst costs per wake-up).
func BenchmarkPublish(b *testing.B) {
	srv := startServer(b, -1)
	pub := newBus(b, srv.ClientURL(), "bench")
	sub := newBus(b, srv.ClientURL(), "bench")
	var want, seen atomic.Int64
	got := make(chan struct{}, 1)
	release, err := sub.Subscribe("mesh.m1.peer.bob", func([]byte) {
		if seen.Add(1) == want.Load() {
			got <- struct{}{}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer release()
	ctx := context.Background()
	b.Run("round_trip", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			want.Add(1)
			if err := pub.Publish(ctx, "mesh.m1.peer.bob", nil); err != nil {
				b.Fatal(err)
			}
			<-got
		}
	})
	b.Run("pipelined", func(b *testing.B) {
		b.ReportAllocs()
		// In windows of 1,024 so the subscriber's pending limit (where NATS
		// drops for a slow consumer) is never reached.
		for left := b.N; left > 0; {
			k := min(left, 1024)
			left -= k
			want.Add(int64(k))
			for range k {
				if err := pub.Publish(ctx, "mesh.m1.peer.bob", nil); err != nil {
					b.Fatal(err)
				}
			}
			<-got
		}
	})
}
