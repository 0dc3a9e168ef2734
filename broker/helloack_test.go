package broker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/meshd/meshd/client"
)

// TestHelloAckMeshPolicy: every successful hello and session_hello carries
// meshPolicy: mesh.self_editable verbatim, upstream's all-true default when
// the column is NULL; never the restored fields on session_hello.
func TestHelloAckMeshPolicy(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Policy")
	alice := e.enroll(mesh, "alice")
	policy := func(ack map[string]any) map[string]any {
		t.Helper()
		mp, _ := ack["meshPolicy"].(map[string]any)
		se, _ := mp["selfEditable"].(map[string]any)
		if se == nil {
			t.Fatalf("hello_ack without meshPolicy.selfEditable: %v", ack)
		}
		return se
	}
	r := e.raw(0)
	r.send(helloFrame(alice, time.Now()))
	se := policy(r.expectFrame("hello_ack"))
	for _, k := range []string{"displayName", "roleTag", "groups", "messageMode"} {
		if se[k] != true {
			t.Fatalf("default selfEditable %v", se)
		}
	}
	execSQL(t, e.dsn, `UPDATE mesh.mesh SET self_editable = '{"displayName":false,"groups":true}' WHERE id = $1`, mesh.ID)
	s := e.raw(0)
	s.send(sessionHelloFrame(alice, client.GenerateIdentity(), time.Now(), time.Hour))
	ack := s.expectFrame("hello_ack")
	if se := policy(ack); se["displayName"] != false || se["groups"] != true || len(se) != 2 {
		t.Fatalf("stored selfEditable %v", se)
	}
	for _, k := range []string{"restored", "restoredStats", "lastSummary", "lastSeenAt"} {
		if _, ok := ack[k]; ok {
			t.Fatalf("session_hello ack carries %s: %v", k, ack)
		}
	}
}

// TestHelloAckRestoredStats: the counters of a connection's last set_stats
// are merged into peer_state when it closes (per field the larger value)
// and come back as restoredStats on the member's next hello, on another
// replica, with restored, lastSummary and lastSeenAt.
func TestHelloAckRestoredStats(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Stats")
	bob := e.enroll(mesh, "bob")
	hello := func(i int, session string) (*rawConn, map[string]any) {
		r := e.raw(i)
		f := helloFrame(bob, time.Now())
		f["sessionId"] = session // a new session: not a silent reattach
		r.send(f)
		return r, r.expectFrame("hello_ack")
	}
	r, ack := hello(0, "s1")
	if _, ok := ack["restoredStats"]; ok || ack["restored"] != nil {
		t.Fatalf("first hello restores: %v", ack)
	}
	r.send(map[string]any{"type": "set_summary", "summary": "profiling"})
	r.send(map[string]any{"type": "set_stats", "stats": map[string]any{"messagesIn": 1, "messagesOut": 1}})
	r.send(map[string]any{"type": "set_stats", "stats": map[string]any{"messagesIn": 7, "messagesOut": 3, "toolCalls": 2, "errors": 1, "uptime": 99}})
	r.send(map[string]any{"type": "set_stats", "stats": "lots"}) // hostile: refused, the last good one stays
	if m := r.expectFrame("error"); m["code"] != "invalid_message" {
		t.Fatalf("bad set_stats: %v", m)
	}
	_ = r.ws.Close()
	stats := func() map[string]any {
		var raw []byte
		ctx := context.Background()
		ps, err := e.st.LoadPeerState(ctx, mesh.ID, bob.member.ID)
		if err != nil {
			return nil
		}
		raw = ps.Stats
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return m
	}
	waitFor(t, 5*time.Second, "stats merged", func() bool { m := stats(); return m != nil && m["messagesIn"] == 7.0 })

	r2, ack := hello(1, "s2")
	rs, _ := ack["restoredStats"].(map[string]any)
	if ack["restored"] != true || ack["lastSummary"] != "profiling" || ack["lastSeenAt"] == nil ||
		rs["messagesIn"] != 7.0 || rs["messagesOut"] != 3.0 || rs["toolCalls"] != 2.0 || rs["errors"] != 1.0 || rs["uptime"] != nil {
		t.Fatalf("restored ack %v", ack)
	}
	// A later session reporting smaller counters does not lower the totals;
	// a larger one raises that field only.
	r2.send(map[string]any{"type": "set_stats", "stats": map[string]any{"messagesIn": 2, "messagesOut": 9}})
	r2.send(map[string]any{"type": "list_peers", "_reqId": "sync"}) // set_stats has no reply: wait for a later one
	r2.expectFrame("peers_list")
	_ = r2.ws.Close()
	waitFor(t, 5*time.Second, "stats merged again", func() bool { m := stats(); return m != nil && m["messagesOut"] == 9.0 })
	if m := stats(); m["messagesIn"] != 7.0 || m["toolCalls"] != 2.0 {
		t.Fatalf("merged stats %v", m)
	}
}
