package broker

import (
	"testing"
	"time"
)

// The hook bucket forgets idle keys at most every 5 minutes (B.10), swept
// lazily by the requests themselves, and keeps keys used recently.
func TestHookBucketSweptLazily(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	h := &hookHandler{rl: NewTokenBucket(5, 5)}
	h.lastSweep.Store(t0.UnixNano())
	h.rl.Take("1:/old", t0)
	h.rl.Take("2:/recent", t0.Add(9*time.Minute))
	steps := []struct {
		name    string
		at      time.Duration
		wantLen int
	}{
		{"before_5_minutes_no_sweep", 4 * time.Minute, 2},
		{"old_key_not_yet_idle_10_minutes", 5 * time.Minute, 2},
		{"within_5_minutes_of_last_sweep_no_sweep", 9 * time.Minute, 2},
		{"idle_key_forgotten_recent_kept", 11 * time.Minute, 1},
		{"all_idle_forgotten", 30 * time.Minute, 0},
	}
	for _, st := range steps {
		h.maybeSweep(t0.Add(st.at))
		if got := h.rl.Len(); got != st.wantLen {
			t.Fatalf("%s: %d keys, want %d", st.name, got, st.wantLen)
		}
	}
}
