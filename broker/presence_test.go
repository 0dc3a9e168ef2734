package broker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
)

// systemEvent waits for the next system push with event ev on c.
func systemEvent(t *testing.T, c *client.Client, ev string, d time.Duration) map[string]any {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m, ok := <-c.Pushes():
			if !ok {
				t.Fatalf("closed while waiting for %s", ev)
			}
			if m.Push.Subtype == "system" && m.Push.Event == ev {
				var data map[string]any
				_ = json.Unmarshal(m.Push.EventData, &data)
				return data
			}
		case <-timeout:
			t.Fatalf("no %s event", ev)
		}
	}
}

// noSystemEvent asserts c receives no system push ev within d.
func noSystemEvent(t *testing.T, c *client.Client, ev string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-c.Pushes():
			if m.Push.Subtype == "system" && m.Push.Event == ev {
				t.Fatalf("unexpected %s: %s", ev, m.Push.EventData)
			}
		case <-timeout:
			return
		}
	}
}

func TestPeerJoinedAndLeftAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config) { c.Grace = 400 * time.Millisecond })
	mesh := e.newMesh("Join")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(1, bob, func(c *client.Config) { c.Groups = []meshd.Group{{Name: "ops"}}; c.PeerType = "ai" })
	ev := systemEvent(t, a, "peer_joined", 5*time.Second)
	if ev["name"] != "bob" || ev["displayName"] != "bob" || ev["pubkey"] != bob.key.Pubkey || ev["peerType"] != "ai" {
		t.Fatalf("peer_joined %v", ev)
	}
	_ = b.Close()
	left := systemEvent(t, a, "peer_left", 10*time.Second)
	if left["pubkey"] != bob.key.Pubkey {
		t.Fatalf("peer_left %v", left)
	}
}

// A client that reconnects within the grace lease, on another replica,
// reattaches silently and keeps its queued messages.
func TestReattachWithinGraceOnOtherReplica(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config) { c.Grace = 5 * time.Second })
	mesh := e.newMesh("Grace")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	session := client.GenerateIdentity()
	b1 := e.dial(0, bob, func(c *client.Config) { c.Session = &session; c.SessionID = "bob-session" })
	systemEvent(t, a, "peer_joined", 5*time.Second)
	presence := b1.HelloAck().PresenceID
	_ = b1.Close()
	// Offline now: the presence waits in its grace lease.
	waitFor(t, 5*time.Second, "grace lease", func() bool {
		ps, _ := e.st.ListPeers(context.Background(), mesh.ID)
		for _, p := range ps {
			if p.ID == presence {
				return p.LeaseUntil != nil
			}
		}
		return false
	})
	sendOK(t, a, session.Pubkey, meshd.PriorityNow, "while you were away")
	b2 := e.dial(1, bob, func(c *client.Config) { c.Session = &session; c.SessionID = "bob-session" })
	if got := b2.HelloAck().PresenceID; got != presence {
		t.Fatalf("reattach made a new presence %s, want %s", got, presence)
	}
	if b2.HelloAck().MemberProfile != nil {
		t.Fatal("silent reattach ack carries memberProfile")
	}
	if m := recvPush(t, b2, 5*time.Second); string(m.Plaintext) != "while you were away" {
		t.Fatalf("queued message %q", m.Plaintext)
	}
	noSystemEvent(t, a, "peer_joined", 500*time.Millisecond)
	noSystemEvent(t, a, "peer_left", 10*time.Millisecond)
}

// A second session_hello with the same session key on another replica
// takes the presence over and closes the old socket with session_replaced.
func TestSessionReplacedAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Replace")
	bob := e.enroll(mesh, "bob")
	session := client.GenerateIdentity()
	old := e.raw(0)
	old.send(sessionHelloFrame(bob, session, time.Now(), time.Hour))
	ack := old.expectFrame("hello_ack")
	fresh := e.raw(1)
	fresh.send(sessionHelloFrame(bob, session, time.Now(), time.Hour))
	ack2 := fresh.expectFrame("hello_ack")
	if ack2["presenceId"] != ack["presenceId"] {
		t.Fatalf("takeover made a new presence")
	}
	if ce := old.expectClose(); ce.Code != 1000 || ce.Text != "session_replaced" {
		t.Fatalf("old socket closed %d %q", ce.Code, ce.Text)
	}
}

func TestPeerStateRestore(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Restore")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(0, bob, func(c *client.Config) { c.SessionID = "s1" })
	if err := b.SetSummary(context.Background(), "refactoring the parser"); err != nil {
		t.Fatal(err)
	}
	if err := b.JoinGroup(context.Background(), "backend", "lead"); err != nil {
		t.Fatal(err)
	}
	// Wait until the join landed (verbs have no reply).
	waitFor(t, 5*time.Second, "group stored", func() bool {
		ps, _ := e.st.ListPeers(context.Background(), mesh.ID)
		for _, p := range ps {
			if p.MemberID == bob.member.ID && len(p.Groups) == 1 && p.Summary != "" {
				return true
			}
		}
		return false
	})
	_ = b.Close()
	waitFor(t, 5*time.Second, "peer state saved", func() bool {
		_, err := e.st.LoadPeerState(context.Background(), mesh.ID, bob.member.ID)
		return err == nil
	})
	b2 := e.dial(0, bob, func(c *client.Config) { c.SessionID = "s2" })
	ack := b2.HelloAck()
	if !ack.Restored || ack.LastSummary != "refactoring the parser" || len(ack.RestoredGroups) != 1 || ack.RestoredGroups[0].Name != "backend" || ack.LastSeenAt == "" {
		t.Fatalf("hello_ack %+v", ack)
	}
	ev := systemEvent(t, a, "peer_returned", 5*time.Second)
	if ev["summary"] != "refactoring the parser" || ev["lastSeenAt"] == nil {
		t.Fatalf("peer_returned %v", ev)
	}
	// The restored group is live: @backend reaches bob.
	sendOK(t, a, "@backend", meshd.PriorityNext, "to backend")
	if m := recvPush(t, b2, 5*time.Second); string(m.Plaintext) != "to backend" {
		t.Fatalf("%q", m.Plaintext)
	}
}

func TestVisibilityAndGroups(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Vis")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(1, bob, nil)
	systemEvent(t, a, "peer_joined", 5*time.Second)
	if err := b.SetVisible(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if ev := systemEvent(t, a, "peer_hidden", 5*time.Second); ev["pubkey"] != bob.key.Pubkey {
		t.Fatalf("peer_hidden %v", ev)
	}
	peers, err := a.ListPeers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.DisplayName == "bob" {
			t.Fatal("hidden peer listed to another member")
		}
	}
	sendOK(t, a, "*", meshd.PriorityNext, "hidden peers miss broadcasts")
	select {
	case m := <-b.Pushes():
		if m.Push.Subtype != "system" {
			t.Fatalf("invisible peer got broadcast %q", m.Plaintext)
		}
	case <-time.After(400 * time.Millisecond):
	}
	if err := b.SetVisible(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	systemEvent(t, a, "peer_visible", 5*time.Second)
	if err := b.JoinGroup(context.Background(), "qa/e2e", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "group", func() bool {
		ps, _ := e.st.ListPeers(context.Background(), mesh.ID)
		for _, p := range ps {
			if p.MemberID == bob.member.ID && len(p.Groups) == 1 {
				return true
			}
		}
		return false
	})
	sendOK(t, a, "@qa", meshd.PriorityNext, "qa")
	if m := recvPush(t, b, 5*time.Second); string(m.Plaintext) != "qa" {
		t.Fatalf("%q", m.Plaintext)
	}
	if err := b.LeaveGroup(context.Background(), "qa/e2e"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "left group", func() bool {
		ps, _ := e.st.ListPeers(context.Background(), mesh.ID)
		for _, p := range ps {
			if p.MemberID == bob.member.ID && len(p.Groups) == 0 {
				return true
			}
		}
		return false
	})
}

// DND is sacred: set manually, neither the TTL sweep nor a drain's JSONL
// fallback changes it, and only "now" gets through.
func TestManualDNDAndTTLSweep(t *testing.T) {
	e := newEnv(t, 1, nil) // STATUS_TTL 60 s: a working status 300 s old is stale
	mesh := e.newMesh("DND")
	alice, bob, carol := e.enroll(mesh, "alice"), e.enroll(mesh, "bob"), e.enroll(mesh, "carol")
	a := e.dial(0, alice, nil)
	b := e.dial(0, bob, nil)
	c := e.dial(0, carol, nil)
	if err := b.SetStatus(context.Background(), meshd.StatusDND); err != nil {
		t.Fatal(err)
	}
	execSQL(t, e.dsn, `UPDATE mesh.presence SET status='working', status_source='hook', status_updated_at=now()-interval '300 seconds' WHERE id=$1`, c.HelloAck().PresenceID)
	waitFor(t, 5*time.Second, "dnd stored", func() bool {
		ps, _ := e.st.ListPeers(context.Background(), mesh.ID)
		for _, p := range ps {
			if p.MemberID == bob.member.ID {
				return p.Status == meshd.StatusDND
			}
		}
		return false
	})
	before := counter(t, e.replicas[0], "broker_ttl_sweeps_total", "flipped", "1")
	flipped := counter(t, e.replicas[0], "broker_ttl_sweep_flipped_total")
	e.replicas[0].jobs.TTLSweep(context.Background())
	if got := counter(t, e.replicas[0], "broker_ttl_sweeps_total", "flipped", "1"); got != before+1 {
		t.Fatalf("ttl sweep metric flipped=1: %v → %v", before, got)
	}
	if got := counter(t, e.replicas[0], "broker_ttl_sweep_flipped_total"); got != flipped+1 {
		t.Fatalf("broker_ttl_sweep_flipped_total: %v → %v, want +1", flipped, got)
	}
	ps, _ := e.st.ListPeers(context.Background(), mesh.ID)
	for _, p := range ps {
		switch p.MemberID {
		case bob.member.ID:
			if p.Status != meshd.StatusDND {
				t.Fatalf("dnd changed to %s", p.Status)
			}
		case carol.member.ID:
			if p.Status != meshd.StatusIdle || p.StatusSource != meshd.SourceJSONL {
				t.Fatalf("stale working not flipped: %s/%s", p.Status, p.StatusSource)
			}
		}
	}
	sendOK(t, a, bob.key.Pubkey, meshd.PriorityNext, "held for dnd")
	sendOK(t, a, bob.key.Pubkey, meshd.PriorityNow, "urgent")
	if m := recvPush(t, b, 5*time.Second); string(m.Plaintext) != "urgent" {
		t.Fatalf("%q", m.Plaintext)
	}
	select {
	case m := <-b.Pushes():
		if m.Push.Subtype != "system" {
			t.Fatalf("dnd recipient got %q", m.Plaintext)
		}
	case <-time.After(time.Second):
	}
}

func TestSharedStateAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("State")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	setter := e.raw(0)
	setter.send(helloFrame(alice, time.Now()))
	setter.expectFrame("hello_ack")
	watcher := e.raw(1)
	watcher.send(helloFrame(bob, time.Now()))
	watcher.expectFrame("hello_ack")

	setter.send(map[string]any{"type": "set_state", "key": "build", "value": map[string]any{"green": true, "n": 3}})
	ch := watcher.expectFrame("state_change")
	if ch["key"] != "build" || ch["updatedBy"] != "alice" || ch["value"].(map[string]any)["n"] != float64(3) {
		t.Fatalf("state_change %v", ch)
	}
	watcher.send(map[string]any{"type": "get_state", "key": "build", "_reqId": "g1"})
	if r := watcher.expectFrame("state_result"); r["_reqId"] != "g1" || r["updatedBy"] != "alice" || r["updatedAt"] == "" {
		t.Fatalf("state_result %v", r)
	}
	watcher.send(map[string]any{"type": "get_state", "key": "missing"})
	if r := watcher.expectFrame("state_result"); r["value"] != nil || r["updatedBy"] != "" || r["updatedAt"] != "" {
		t.Fatalf("missing key %v", r)
	}
	setter.send(map[string]any{"type": "set_state", "key": "alpha", "value": "first"})
	watcher.expectFrame("state_change")
	watcher.send(map[string]any{"type": "list_state"})
	l := watcher.expectFrame("state_list")
	entries := l["entries"].([]any)
	if len(entries) != 2 || entries[0].(map[string]any)["key"] != "alpha" {
		t.Fatalf("state_list %v", l)
	}
	// No reply to the setter: its next frame is the answer to a later request.
	setter.send(map[string]any{"type": "list_peers", "_reqId": "p"})
	if f := setter.expectFrame("peers_list"); f["_reqId"] != "p" {
		t.Fatal(f)
	}
	m, _, _ := setter.next(300 * time.Millisecond)
	if m != nil && m["type"] == "state_change" {
		t.Fatal("setter received its own state_change")
	}
}
