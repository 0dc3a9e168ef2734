package store

import (
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd"
)

type clockState struct {
	speed            float64
	paused           bool
	tick             int64
	simTime, started time.Time
}

func (c *clockState) fill(speed float64, paused bool, tick int64, simTime, started time.Time) {
	*c = clockState{speed, paused, tick, simTime, started}
}

func TestClockLifecycle(t *testing.T) {
	f := newFixture(t)
	var st clockState
	wantErr(t, f.s.GetClock(f.ctx, f.mesh.ID, st.fill), meshd.ErrNotFound)
	wantErr(t, f.s.PauseClock(f.ctx, f.mesh.ID, st.fill), meshd.ErrNotFound)
	wantErr(t, f.s.ResumeClock(f.ctx, f.mesh.ID, st.fill), meshd.ErrNotFound)
	if err := f.s.SetClock(f.ctx, f.mesh.ID, 10, st.fill); err != nil {
		t.Fatal(err)
	}
	if st.speed != 10 || st.paused || st.tick != 0 || !st.simTime.Equal(st.started) {
		t.Fatalf("new clock = %+v", st)
	}
	if err := f.s.PauseClock(f.ctx, f.mesh.ID, st.fill); err != nil || !st.paused {
		t.Fatalf("pause = %+v, %v", st, err)
	}
	// set_clock on a paused clock changes the speed and keeps it paused.
	if err := f.s.SetClock(f.ctx, f.mesh.ID, 20, st.fill); err != nil || !st.paused || st.speed != 20 {
		t.Fatalf("set on paused = %+v, %v", st, err)
	}
	if _, ok, _ := f.s.NextClockTickIn(f.ctx); ok {
		t.Fatal("a paused clock has a next tick")
	}
	if err := f.s.ResumeClock(f.ctx, f.mesh.ID, st.fill); err != nil || st.paused {
		t.Fatalf("resume = %+v, %v", st, err)
	}
	if d, ok, err := f.s.NextClockTickIn(f.ctx); err != nil || !ok || d > 3*time.Second {
		t.Fatalf("next tick in %v, %v, %v; want ≤ 3 s at speed 20", d, ok, err)
	}
}

// Concurrent clock jobs: every due period ticks once, tick numbers never
// repeat and sim time moves 60 s per tick.
func TestAdvanceClocksConcurrentNoDuplicateTicks(t *testing.T) {
	f := newFixture(t)
	var st clockState
	if err := f.s.SetClock(f.ctx, f.mesh.ID, 1, st.fill); err != nil {
		t.Fatal(err)
	}
	start := st.simTime
	var mu sync.Mutex
	seen := map[int64]int{}
	for round := range 5 {
		f.exec(`UPDATE mesh.clock SET next_tick_at = now() - interval '1 millisecond' WHERE mesh_id = $1`, f.mesh.ID)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				_, err := f.s.AdvanceClocks(f.ctx, func(meshID string, tick int64, simTime time.Time, _ float64) {
					mu.Lock()
					defer mu.Unlock()
					seen[tick]++
					if want := start.Add(time.Duration(tick) * time.Minute); !simTime.Equal(want) {
						t.Errorf("tick %d sim time %v, want %v", tick, simTime, want)
					}
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if len(seen) != round+1 {
			t.Fatalf("round %d: ticks %v, want one per round", round, seen)
		}
	}
	for tick, n := range seen {
		if n != 1 || tick < 1 || tick > 5 {
			t.Fatalf("ticks = %v, want 1..5 once each", seen)
		}
	}
}

func TestPauseIdleClocks(t *testing.T) {
	f := newFixture(t)
	var st clockState
	for _, m := range []string{f.mesh.ID, f.other.ID} {
		if err := f.s.SetClock(f.ctx, m, 5, st.fill); err != nil {
			t.Fatal(err)
		}
	}
	f.attach(f.attachReq(f.alice, "sa", "")) // only f.mesh has a live presence
	if n, err := f.s.PauseIdleClocks(f.ctx); err != nil || n != 1 {
		t.Fatalf("paused %d, %v; want 1", n, err)
	}
	if err := f.s.GetClock(f.ctx, f.other.ID, st.fill); err != nil || !st.paused {
		t.Fatalf("idle mesh clock = %+v, %v; want paused", st, err)
	}
	if err := f.s.GetClock(f.ctx, f.mesh.ID, st.fill); err != nil || st.paused {
		t.Fatalf("live mesh clock = %+v, %v; want running", st, err)
	}
}
