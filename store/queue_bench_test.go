package store

import (
	"fmt"
	"testing"

	"github.com/meshd/meshd"
)

// BenchmarkEnqueue compares the cost per queued message of one INSERT per
// send (the road before issue 10) with the group commit's one statement
// per batch (store.EnqueueBatch), at the batch sizes a busy replica sees.
// ns/op is per message in every case.
func BenchmarkEnqueue(b *testing.B) {
	msg := func(f *fixture) *meshd.QueuedMessage {
		return &meshd.QueuedMessage{MeshID: f.mesh.ID, SenderMemberID: f.alice.ID, TargetSpec: f.bob.Pubkey,
			Priority: meshd.PriorityNow, Nonce: "bm9uY2U=", Ciphertext: "Y2lwaGVydGV4dA=="}
	}
	b.Run("single", func(b *testing.B) {
		f := newFixture(b)
		for b.Loop() {
			if err := f.s.Enqueue(f.ctx, msg(f), false); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, n := range []int{8, 64, 256} {
		b.Run(fmt.Sprintf("batch_%d", n), func(b *testing.B) {
			f := newFixture(b)
			ms, dl := make([]*meshd.QueuedMessage, n), make([]bool, n)
			for b.Loop() {
				for i := range ms {
					ms[i] = msg(f)
				}
				if err := f.s.EnqueueBatch(f.ctx, ms, dl); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
		})
	}
}
