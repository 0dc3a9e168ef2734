package meshd

import "testing"

// The six cases of upstream grants-enforcement.test.ts (docs/protocol.md B.17).
func TestGrantsAllows(t *testing.T) {
	t.Parallel()
	const member, session = "memberkey", "sessionkey"
	cases := []struct {
		name          string
		grants        Grants
		sessionKey    string
		dm, broadcast bool
	}{
		{"no entry: dm and broadcast allowed", Grants{}, session, true, true},
		{"member entry [read] denies dm", Grants{member: {"read"}}, session, false, false},
		{"member entry [] denies dm and broadcast", Grants{member: {}}, session, false, false},
		{"session entry [dm] used without member entry", Grants{session: {"dm"}}, session, true, false},
		{"member [] beats session [dm broadcast]", Grants{member: {}, session: {"dm", "broadcast"}}, session, false, false},
		{"no session key: session entry ignored", Grants{session: {}}, "", true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.grants.Allows(member, c.sessionKey, "dm"); got != c.dm {
				t.Errorf("dm = %v, want %v", got, c.dm)
			}
			if got := c.grants.Allows(member, c.sessionKey, "broadcast"); got != c.broadcast {
				t.Errorf("broadcast = %v, want %v", got, c.broadcast)
			}
		})
	}
}

func TestGroupMatches(t *testing.T) {
	t.Parallel()
	cases := []struct {
		group, target string
		want          bool
	}{
		{"a", "a", true}, {"a/b", "a", true}, {"a/b/c", "a/b", true},
		{"a", "a/b", false}, {"ab", "a", false}, {"b/a", "a", false},
	}
	for _, c := range cases {
		if got := GroupMatches(c.group, c.target); got != c.want {
			t.Errorf("GroupMatches(%q, %q) = %v", c.group, c.target, got)
		}
	}
}

func TestDeliverable(t *testing.T) {
	t.Parallel()
	if got := Deliverable(StatusIdle); len(got) != 3 {
		t.Fatalf("idle: %v", got)
	}
	for _, s := range []Status{StatusWorking, StatusDND} {
		if got := Deliverable(s); len(got) != 1 || got[0] != PriorityNow {
			t.Fatalf("%s: %v", s, got)
		}
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	t.Parallel()
	prev := NewID()
	for i := 0; i < 1000; i++ {
		id := NewID()
		if len(id) != 32 || id[:16] < prev[:16] {
			t.Fatalf("id %q after %q", id, prev)
		}
		prev = id
	}
}
