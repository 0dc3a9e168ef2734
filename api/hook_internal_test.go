package api

import (
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/ratelimit"
)

// The hook bucket forgets idle keys at most every 5 minutes (B.10), swept
// lazily by the requests themselves, and keeps keys used recently.
func TestHookBucketSweptLazily(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	h := &hookHandler{buckets: &buckets{rl: ratelimit.New(5, 5), ipRL: ratelimit.New(5, 5)}}
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

// Bucket keys are "<pid or 0>:<cwd>" (B.10); long cwds are hashed so a key
// stays small.
func TestHookKey(t *testing.T) {
	pid := int32(42)
	long := strings.Repeat("d", 300)
	tests := []struct {
		name string
		req  hookRequest
		want string
	}{
		{"pid_and_cwd", hookRequest{CWD: "/p", PID: &pid}, "42:/p"},
		{"no_pid_is_0", hookRequest{CWD: "/p"}, "0:/p"},
		{"unparsed_is_0_colon", hookRequest{}, "0:"},
		{"long_cwd_hashed", hookRequest{CWD: long, PID: &pid}, "42:sha256:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := hookKey(&tt.req)
			if !strings.HasPrefix(got, tt.want) || (len(tt.req.CWD) <= 256 && got != tt.want) || len(got) > 300 {
				t.Fatalf("hookKey = %q, want %q", got, tt.want)
			}
		})
	}
	if hookKey(&hookRequest{CWD: long + "x"}) == hookKey(&hookRequest{CWD: long + "y"}) {
		t.Fatal("distinct long cwds share a key")
	}
}
