package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/client"
)

// A member sets and reads its grants over its own socket (A.3-31): the
// entry is enforced at once on another replica, null restores the
// defaults, and a session_hello socket acts on its parent member's row.
func TestGrantsOverWebSocket(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Grants")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	b := e.raw(0)
	b.send(helloFrame(bob, time.Now()))
	b.expectFrame("hello_ack")
	b.send(map[string]any{"type": "get_grants", "_reqId": "g0"})
	if f := b.expectFrame("grants"); f["_reqId"] != "g0" || len(f["grants"].(map[string]any)) != 0 {
		t.Fatalf("initial grants %v", f)
	}
	// Upper-case key, duplicate caps: stored lower-case, deduplicated.
	b.send(map[string]any{"type": "set_grants", "_reqId": "s1", "grants": map[string]any{
		strings.ToUpper(alice.key.Pubkey): []string{"read", "read", "state-read"}}})
	f := b.expectFrame("grants")
	if g := f["grants"].(map[string]any); f["_reqId"] != "s1" || len(g) != 1 || fmt.Sprint(g[alice.key.Pubkey]) != "[read state-read]" {
		t.Fatalf("set_grants answer %v", f)
	}
	a := e.dial(1, alice, nil)
	sendRejected(t, a, bob.key.Pubkey, meshd.PriorityNext, "x", "blocked by recipient grants (sender lacks dm capability)")

	// The same member's session socket sees and changes the same row.
	s := e.raw(1)
	s.send(sessionHelloFrame(bob, client.GenerateIdentity(), time.Now(), time.Hour))
	s.expectFrame("hello_ack")
	s.send(map[string]any{"type": "get_grants", "_reqId": "g1"})
	if f := s.expectFrame("grants"); len(f["grants"].(map[string]any)) != 1 {
		t.Fatalf("session socket's grants %v", f)
	}
	s.send(map[string]any{"type": "set_grants", "_reqId": "s2", "grants": map[string]any{alice.key.Pubkey: nil}})
	if f := s.expectFrame("grants"); len(f["grants"].(map[string]any)) != 0 {
		t.Fatalf("null did not delete: %v", f)
	}
	if n := queryInt(t, e.dsn, `SELECT count(*) FROM mesh.member WHERE id = $1 AND peer_grants = '{}'::jsonb`, bob.member.ID); n != 1 {
		t.Fatal("bob's row still has grants")
	}
	sendOK(t, a, bob.key.Pubkey, meshd.PriorityNext, "back to defaults")
	if n := queryInt(t, e.dsn, `SELECT count(*) FROM mesh.member WHERE id = $1 AND peer_grants <> '{}'::jsonb`, alice.member.ID); n != 0 {
		t.Fatal("another member's row changed")
	}
}

// Bad set_grants frames get specific error codes, change nothing and
// leave the socket usable; the row is capped at 1000 entries.
func TestSetGrantsRefusals(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("GrantErrors")
	bob := e.enroll(mesh, "bob")
	key := client.GenerateIdentity().Pubkey
	b := e.raw(0)
	b.send(helloFrame(bob, time.Now()))
	b.expectFrame("hello_ack")
	many := map[string]any{}
	for i := 0; i < 101; i++ {
		many[fmt.Sprintf("%064x", i)] = []string{"dm"}
	}
	tests := []struct {
		name   string
		grants any
		code   string
	}{
		{"missing", nil, "grants_required"},
		{"array", []string{key}, "grants_required"},
		{"empty", map[string]any{}, "grants_required"},
		{"short_key", map[string]any{key[:63]: []string{"dm"}}, "invalid_pubkey"},
		{"not_hex", map[string]any{strings.Repeat("g", 64): []string{"dm"}}, "invalid_pubkey"},
		{"same_key_twice", map[string]any{key: []string{"dm"}, strings.ToUpper(key): nil}, "invalid_pubkey"},
		{"caps_string", map[string]any{key: "dm"}, "invalid_capabilities"},
		{"caps_numbers", map[string]any{key: []int{1}}, "invalid_capabilities"},
		{"unknown_cap", map[string]any{key: []string{"dm", "root"}}, "unknown_capability"},
		{"too_many_in_one", many, "too_many_grants"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := map[string]any{"type": "set_grants", "_reqId": fmt.Sprint("r", i)}
			if tt.grants != nil {
				frame["grants"] = tt.grants
			}
			b.send(frame)
			if f := b.expectFrame("error"); f["code"] != tt.code || f["_reqId"] != frame["_reqId"] {
				t.Fatalf("want %s: %v", tt.code, f)
			}
			if n := queryInt(t, e.dsn, `SELECT count(*) FROM mesh.member WHERE id = $1 AND peer_grants = '{}'::jsonb`, bob.member.ID); n != 1 {
				t.Fatal("a refused set_grants wrote")
			}
		})
	}
	// A full row: replacing an entry works, a new one is refused.
	execSQL(t, e.dsn, `UPDATE mesh.member SET peer_grants = (SELECT jsonb_object_agg(lpad(to_hex(i), 64, '0'), '["dm"]'::jsonb)
		FROM generate_series(1, 1000) i) WHERE id = $1`, bob.member.ID)
	b.send(map[string]any{"type": "set_grants", "_reqId": "full", "grants": map[string]any{key: []string{}}})
	if f := b.expectFrame("error"); f["code"] != "too_many_grants" || f["_reqId"] != "full" {
		t.Fatalf("1001st entry: %v", f)
	}
	b.send(map[string]any{"type": "set_grants", "_reqId": "replace", "grants": map[string]any{fmt.Sprintf("%064x", 1): []string{}}})
	if f := b.expectFrame("grants"); len(f["grants"].(map[string]any)) != 1000 {
		t.Fatalf("replace in a full row: %d entries", len(f["grants"].(map[string]any)))
	}
	if n := queryInt(t, e.dsn, `SELECT count(*) FROM mesh.member WHERE id = $1 AND peer_grants -> $2 = '[]'::jsonb AND NOT peer_grants ? $3`,
		bob.member.ID, fmt.Sprintf("%064x", 1), key); n != 1 {
		t.Fatal("full row: replaced entry or refused entry wrong")
	}
}
