package main

import (
	"context"
	"testing"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/internal/testpg"
)

// BenchmarkDMRoundTrip measures one encrypted DM through a running meshd
// process (real Postgres, embedded NATS): seal, send, ack, queue insert,
// wake-up, claim, push, open — sequentially, so ns/op is the round-trip
// latency.
func BenchmarkDMRoundTrip(b *testing.B) {
	dsn := testpg.NewDatabase(b)
	p := startMeshd(b, "DATABASE_URL="+dsn, "SEND_RATE_BURST=1000000000", "SEND_RATE_PER_MIN=1000000000")
	ms := enroll(b, dsn, 2)
	a := dial(b, p, ms[0], false)
	c := dial(b, p, ms[1], true)
	msg := []byte("benchmark payload of a typical short coordination message")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.Send(context.Background(), ms[1].key.Pubkey, meshd.PriorityNow, msg); err != nil {
			b.Fatal(err)
		}
		for {
			m := <-c.Pushes()
			if m.Push.Subtype != "system" {
				break
			}
		}
	}
}
