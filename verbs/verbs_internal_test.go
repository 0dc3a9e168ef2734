package verbs

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// The verbs' pure rules. Their database side is tested end to end over
// sockets by the broker's tests (grants, moderation, audit, state) and
// jobs' (schedules, clocks), on real PostgreSQL and NATS.

func TestClockSpeedIsJSNumberClamped(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{
		`5`: 5, `"7"`: 7, `" 8 "`: 8, `1000`: 100, `0`: 1, `-3`: 1, `"fast"`: 1, `2.5`: 2.5,
		`true`: 1, `false`: 1, `null`: 1, `[]`: 1, ``: 1,
	} {
		if got := clockSpeed(json.RawMessage(in)); got != want {
			t.Errorf("clockSpeed(%s) = %v, want %v", in, got, want)
		}
	}
}

func TestParseGrantsPatchRefusals(t *testing.T) {
	t.Parallel()
	key := strings.Repeat("ab", 32)
	many := map[string]any{}
	for i := range maxGrantsPatch + 1 {
		many[fmt.Sprintf("%064x", i)] = []string{"dm"}
	}
	for name, tc := range map[string]struct {
		in   any
		code string
	}{
		"not_object":  {[]string{"dm"}, "grants_required"},
		"empty":       {map[string]any{}, "grants_required"},
		"too_many":    {many, "too_many_grants"},
		"bad_key":     {map[string]any{"abc": []string{"dm"}}, "invalid_pubkey"},
		"dup_key":     {json.RawMessage(`{"` + key + `":["dm"],"` + strings.ToUpper(key) + `":["dm"]}`), "invalid_pubkey"},
		"bad_caps":    {map[string]any{key: "dm"}, "invalid_capabilities"},
		"unknown_cap": {map[string]any{key: []string{"root"}}, "unknown_capability"},
	} {
		raw, _ := json.Marshal(tc.in)
		if _, code, msg := parseGrantsPatch(raw); code != tc.code || msg == "" {
			t.Errorf("%s: code %q %q, want %q", name, code, msg, tc.code)
		}
	}
	patch, code, _ := parseGrantsPatch(json.RawMessage(`{"` + strings.ToUpper(key) + `":["dm","dm","read"],"` + strings.Repeat("cd", 32) + `":null}`))
	if code != "" || len(patch) != 2 || strings.Join(patch[key], ",") != "dm,read" || patch[strings.Repeat("cd", 32)] != nil {
		t.Fatalf("patch = %v, %q", patch, code)
	}
}

func TestAuditPageClamps(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		limit, offset *float64
		l, o          int
	}{
		{nil, nil, auditQueryDefault, 0},
		{f(0), f(-5), 1, 0},
		{f(1e9), f(2.9), auditQueryMaxLimit, 2},
		{f(7.8), f(1e12), 7, 1<<31 - 1},
	} {
		if l, o := auditPage(tc.limit, tc.offset); l != tc.l || o != tc.o {
			t.Errorf("auditPage(%v, %v) = %d, %d; want %d, %d", tc.limit, tc.offset, l, o, tc.l, tc.o)
		}
	}
}

func TestKickMatching(t *testing.T) {
	t.Parallel()
	now := time.Now()
	p := meshd.Presence{DisplayName: "bob", MemberPubkey: "abcdef0123", LastPingAt: now.Add(-time.Minute)}
	stale := int64(30_000)
	fresh := int64(120_000)
	for name, tc := range map[string]struct {
		m    kickRequest
		want bool
	}{
		"all":          {kickRequest{All: true}, true},
		"stale":        {kickRequest{Stale: &stale}, true},
		"not_stale":    {kickRequest{Stale: &fresh}, false},
		"name":         {kickRequest{Target: "bob"}, true},
		"pubkey":       {kickRequest{Target: "abcdef0123"}, true},
		"prefix_upper": {kickRequest{Target: "ABCD"}, true},
		"short_prefix": {kickRequest{Target: "abc"}, false},
		"other":        {kickRequest{Target: "carol"}, false},
		"empty":        {kickRequest{}, false},
	} {
		if got := matchesKick(p, tc.m, now); got != tc.want {
			t.Errorf("%s: matchesKick = %v, want %v", name, got, tc.want)
		}
	}
	if kickReason(true, true) != wire.ReasonKickedStale || kickReason(true, false) != wire.ReasonKicked ||
		kickReason(false, true) != wire.ReasonDisconnectedStale || kickReason(false, false) != wire.ReasonDisconnected {
		t.Fatal("kickReason mapping")
	}
}
