package store

import (
	"fmt"
	"testing"
	"time"

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

// BenchmarkClaimBatch compares n drains claiming one statement each (the
// road before the claim batch) with one ClaimBatch for all n, each drain
// finding 2 rows (what a 100 × 1,000 burst's claims found on average).
// ns/op is per drain (claimer) in every case; the rows are enqueued and
// marked delivered outside the timer.
func BenchmarkClaimBatch(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		for _, batched := range []bool{false, true} {
			name := fmt.Sprintf("each_%d", n)
			if batched {
				name = fmt.Sprintf("batch_%d", n)
			}
			b.Run(name, func(b *testing.B) {
				f := newFixture(b)
				reqs := make([]meshd.ClaimRequest, n)
				ms := make([]*meshd.QueuedMessage, 0, 2*n)
				for i := range reqs {
					m := f.createMember(f.mesh.ID, fmt.Sprintf("%064x", i+1), fmt.Sprintf("m%d", i), "member")
					reqs[i] = meshd.ClaimRequest{MeshID: f.mesh.ID, ClaimerPresenceID: fmt.Sprintf("sock-%d", i),
						MemberPubkey: m.Pubkey, Priorities: allPrios, Lease: 30 * time.Second, Limit: 256}
				}
				claimed := make([]string, 0, 2*n)
				for b.Loop() {
					b.StopTimer()
					ms, claimed = ms[:0], claimed[:0]
					for i := range 2 * n {
						ms = append(ms, &meshd.QueuedMessage{MeshID: f.mesh.ID, SenderMemberID: f.alice.ID,
							TargetSpec: reqs[i%n].MemberPubkey, Priority: meshd.PriorityNow, Nonce: "bm9uY2U=", Ciphertext: "Y2lwaGVy"})
					}
					if err := f.s.EnqueueBatch(f.ctx, ms, make([]bool, len(ms))); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if batched {
						out, err := f.s.ClaimBatch(f.ctx, reqs)
						if err != nil {
							b.Fatal(err)
						}
						for _, rows := range out {
							for _, d := range rows {
								claimed = append(claimed, d.ID)
							}
						}
					} else {
						for _, req := range reqs {
							rows, err := f.s.Claim(f.ctx, req)
							if err != nil {
								b.Fatal(err)
							}
							for _, d := range rows {
								claimed = append(claimed, d.ID)
							}
						}
					}
					b.StopTimer()
					if len(claimed) != 2*n {
						b.Fatalf("claimed %d rows, want %d", len(claimed), 2*n)
					}
					if err := f.s.MarkDelivered(f.ctx, claimed); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/drain")
			})
		}
	}
}
