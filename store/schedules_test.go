package store

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshd/meshd"
)

func (f *fixture) schedule(to string, at time.Time, cron string) string {
	f.t.Helper()
	id, err := f.s.CreateSchedule(f.ctx, f.mesh.ID, "", f.alice.ID, to, "hello", at, cron, "")
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

func (f *fixture) due() map[string]time.Time {
	f.t.Helper()
	out := map[string]time.Time{}
	due, _, err := f.s.DueSchedules(f.ctx, 100)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, sc := range due {
		out[sc.ID] = sc.DeliverAt
	}
	return out
}

// directRoute queues the occurrence for its target, like the broker's
// direct branch.
func directRoute(calls *atomic.Int64) meshd.ScheduleRoute {
	return func(sc meshd.Schedule, sender meshd.Member) (*meshd.QueuedMessage, bool, error) {
		calls.Add(1)
		return &meshd.QueuedMessage{MeshID: sc.MeshID, SenderMemberID: sender.ID, TargetSpec: sc.To,
			Priority: meshd.PriorityNow, Ciphertext: sc.Message}, false, nil
	}
}

func (f *fixture) queued(target string) int {
	f.t.Helper()
	var n int
	if err := f.s.pool.QueryRow(f.ctx, `SELECT count(*) FROM mesh.message_queue WHERE target_spec = $1`, target).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// Many schedulers racing for one occurrence: exactly one wins, and the
// queue holds exactly one row for it.
func TestFireScheduleExactlyOnce(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"one_shot", "cron"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t)
			cron := ""
			if kind == "cron" {
				cron = "* * * * *"
			}
			id := f.schedule(f.bob.Pubkey, time.Now().Add(-time.Second), cron)
			due := f.due()[id]
			if due.IsZero() {
				t.Fatal("schedule not due")
			}
			var next time.Time
			if cron != "" {
				next = time.Now().Add(time.Hour).Truncate(time.Minute)
			}
			var wins, calls atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					fired, err := f.s.FireSchedule(f.ctx, id, due, next, directRoute(&calls))
					if err != nil {
						t.Error(err)
					}
					if fired {
						wins.Add(1)
					}
				})
			}
			wg.Wait()
			if wins.Load() != 1 || calls.Load() != 1 || f.queued(f.bob.Pubkey) != 1 {
				t.Fatalf("wins=%d route calls=%d queued=%d, want 1/1/1", wins.Load(), calls.Load(), f.queued(f.bob.Pubkey))
			}
			if _, stillDue := f.due()[id]; stillDue {
				t.Fatal("occurrence still due after firing")
			}
		})
	}
}

// A route error rolls the claim back: the occurrence stays due and nothing
// is queued.
func TestFireScheduleRollsBackOnRouteError(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.schedule(f.bob.Pubkey, time.Now().Add(-time.Second), "")
	due := f.due()[id]
	boom := errors.New("boom")
	_, err := f.s.FireSchedule(f.ctx, id, due, time.Time{}, func(meshd.Schedule, meshd.Member) (*meshd.QueuedMessage, bool, error) {
		return nil, false, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if _, ok := f.due()[id]; !ok || f.queued(f.bob.Pubkey) != 0 {
		t.Fatal("a failed firing was not rolled back")
	}
}

func TestCancelScheduleStopsFiring(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.schedule(f.bob.Pubkey, time.Now().Add(-time.Second), "* * * * *")
	due := f.due()[id]
	if ok, err := f.s.CancelSchedule(f.ctx, f.mesh.ID, f.bob.ID, id); err != nil || ok {
		t.Fatalf("cancel by another member = %v, %v; want false", ok, err)
	}
	if ok, err := f.s.CancelSchedule(f.ctx, f.mesh.ID, f.alice.ID, id); err != nil || !ok {
		t.Fatalf("cancel = %v, %v; want true", ok, err)
	}
	var calls atomic.Int64
	fired, err := f.s.FireSchedule(f.ctx, id, due, time.Now().Add(time.Minute), directRoute(&calls))
	if err != nil || fired || calls.Load() != 0 {
		t.Fatalf("cancelled schedule fired=%v calls=%d err=%v", fired, calls.Load(), err)
	}
	if ok, _ := f.s.CancelSchedule(f.ctx, f.mesh.ID, f.alice.ID, id); ok {
		t.Fatal("second cancel reported ok")
	}
}

// A cron row with no further occurrence fires a last time and ends; list
// shows only pending rows.
func TestCronWithoutNextEndsAndListShowsPending(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cronID := f.schedule("*", time.Now().Add(-time.Second), "0 0 30 2 *")
	later := f.schedule(f.bob.Pubkey, time.Now().Add(time.Hour), "")
	var calls atomic.Int64
	if fired, err := f.s.FireSchedule(f.ctx, cronID, f.due()[cronID], time.Time{}, directRoute(&calls)); err != nil || !fired {
		t.Fatalf("fire = %v, %v", fired, err)
	}
	list, err := f.s.ListSchedules(f.ctx, f.mesh.ID, "", f.alice.ID)
	if err != nil || len(list) != 1 || list[0].ID != later {
		t.Fatalf("pending = %v, %v; want only %s", list, err, later)
	}
	d, ok, err := f.s.NextScheduleIn(f.ctx)
	if err != nil || !ok || d <= 50*time.Minute {
		t.Fatalf("next in = %v, %v, %v; want about an hour", d, ok, err)
	}
}
