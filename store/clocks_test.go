package store

import (
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd"
)

func TestClockLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, fn := range []func() (meshd.Clock, error){
		func() (meshd.Clock, error) { return f.s.GetClock(f.ctx, f.mesh.ID) },
		func() (meshd.Clock, error) { return f.s.PauseClock(f.ctx, f.mesh.ID) },
		func() (meshd.Clock, error) { return f.s.ResumeClock(f.ctx, f.mesh.ID) },
	} {
		_, err := fn()
		wantErr(t, err, meshd.ErrNotFound)
	}
	st, err := f.s.SetClock(f.ctx, f.mesh.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if st.Speed != 10 || st.Paused || st.Tick != 0 || !st.SimTime.Equal(st.StartedAt) {
		t.Fatalf("new clock = %+v", st)
	}
	if st, err = f.s.PauseClock(f.ctx, f.mesh.ID); err != nil || !st.Paused {
		t.Fatalf("pause = %+v, %v", st, err)
	}
	// set_clock on a paused clock changes the speed and keeps it paused.
	if st, err = f.s.SetClock(f.ctx, f.mesh.ID, 20); err != nil || !st.Paused || st.Speed != 20 {
		t.Fatalf("set on paused = %+v, %v", st, err)
	}
	if _, ok, _ := f.s.NextClockTickIn(f.ctx); ok {
		t.Fatal("a paused clock has a next tick")
	}
	if st, err = f.s.ResumeClock(f.ctx, f.mesh.ID); err != nil || st.Paused {
		t.Fatalf("resume = %+v, %v", st, err)
	}
	if d, ok, err := f.s.NextClockTickIn(f.ctx); err != nil || !ok || d > 3*time.Second {
		t.Fatalf("next tick in %v, %v, %v; want ≤ 3 s at speed 20", d, ok, err)
	}
}

// Concurrent clock jobs: every due period ticks once, tick numbers never
// repeat and sim time moves 60 s per tick.
func TestAdvanceClocksConcurrentNoDuplicateTicks(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	st, err := f.s.SetClock(f.ctx, f.mesh.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	start := st.SimTime
	var mu sync.Mutex
	seen := map[int64]int{}
	for round := range 5 {
		f.exec(`UPDATE mesh.clock SET next_tick_at = now() - interval '1 millisecond' WHERE mesh_id = $1`, f.mesh.ID)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				ticks, err := f.s.AdvanceClocks(f.ctx)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				defer mu.Unlock()
				for _, c := range ticks {
					seen[c.Tick]++
					if want := start.Add(time.Duration(c.Tick) * time.Minute); !c.SimTime.Equal(want) {
						t.Errorf("tick %d sim time %v, want %v", c.Tick, c.SimTime, want)
					}
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
	t.Parallel()
	f := newFixture(t)
	for _, m := range []string{f.mesh.ID, f.other.ID} {
		if _, err := f.s.SetClock(f.ctx, m, 5); err != nil {
			t.Fatal(err)
		}
	}
	f.attach(f.attachReq(f.alice, "sa", "")) // only f.mesh has a live presence
	if n, err := f.s.PauseIdleClocks(f.ctx); err != nil || n != 1 {
		t.Fatalf("paused %d, %v; want 1", n, err)
	}
	if st, err := f.s.GetClock(f.ctx, f.other.ID); err != nil || !st.Paused {
		t.Fatalf("idle mesh clock = %+v, %v; want paused", st, err)
	}
	if st, err := f.s.GetClock(f.ctx, f.mesh.ID); err != nil || st.Paused {
		t.Fatalf("live mesh clock = %+v, %v; want running", st, err)
	}
}
