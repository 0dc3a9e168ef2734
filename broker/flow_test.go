package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/broker"
)

// Issue 11: an acking client has at most PushWindow pushes in flight; the
// next rows are claimed as its acks arrive; a client whose window stays full
// is closed slow_consumer (1013) and its claims are released at once, so a
// reconnect gets the unacked backlog — at the same pace — and never a row it
// acked.
func TestPushWindowPacesAckingClient(t *testing.T) {
	const window, rows = 4, 10
	e := newEnv(t, 1, func(c *broker.Config) {
		c.PushWindow, c.SlowConsumerAfter, c.RedrainInterval = window, time.Second, 200*time.Millisecond
	})
	mesh := e.newMesh("Window")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	ackingHello := func() *rawConn {
		rc := e.raw(0)
		f := helloFrame(bob, time.Now())
		f["capabilities"] = []string{"client_ack"}
		rc.send(f)
		rc.expectFrame("hello_ack")
		return rc
	}
	rc := ackingHello()
	for i := range rows {
		q := &meshd.QueuedMessage{MeshID: mesh.ID, SenderMemberID: alice.member.ID, TargetSpec: bob.key.Pubkey,
			Priority: meshd.PriorityNow, Ciphertext: fmt.Sprintf("row %d", i)}
		if err := e.st.Enqueue(context.Background(), q, false); err != nil {
			t.Fatal(err)
		}
	}
	pushes := func(rc *rawConn, n int) []string {
		var ids []string
		for range n {
			ids = append(ids, rc.expectFrame("push")["messageId"].(string))
		}
		return ids
	}
	first := pushes(rc, window)
	acked := first[:2]
	for _, id := range acked {
		rc.send(map[string]any{"type": "client_ack", "brokerMessageId": id})
	}
	// Every push until the close: the window's 4, then one per ack — the
	// window never overflows while the client reads nothing more.
	more := 0
	for {
		f, ce, err := rc.next(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ce != nil {
			if ce.Code != 1013 || ce.Text != "slow_consumer" {
				t.Fatalf("stalled client closed %d %q, want 1013 slow_consumer", ce.Code, ce.Text)
			}
			break
		}
		if f["type"] == "push" {
			more++
		}
	}
	if more != len(acked) {
		t.Fatalf("%d pushes after %d acks with a full window, want %d", more, len(acked), len(acked))
	}
	if n := counter(t, e.replicas[0], "broker_connections_closed_total", "reason", "slow_consumer"); n != 1 {
		t.Fatalf("slow_consumer closes = %v", n)
	}

	again := ackingHello()
	seen := map[string]bool{}
	for len(seen) < rows-len(acked) {
		id := pushes(again, 1)[0]
		for _, a := range acked {
			if id == a {
				t.Fatalf("acked row %s pushed again", id)
			}
		}
		if seen[id] {
			t.Fatalf("row %s pushed twice to the new socket", id)
		}
		seen[id] = true
		again.send(map[string]any{"type": "client_ack", "brokerMessageId": id})
	}
	waitFor(t, 5*time.Second, "every row delivered", func() bool {
		return queryInt(t, e.dsn, `SELECT count(*) FROM mesh.message_queue WHERE mesh_id = $1 AND delivered_at IS NULL`, mesh.ID) == 0
	})
}

// A client that keeps acking, slowly, is never pushed a row twice on the
// same socket: rows re-claimed after their lease while still in flight to
// it are left in flight (chaos scenario "slow": 140–172 duplicates on a
// live socket before).
func TestSlowAckingClientGetsNoDuplicates(t *testing.T) {
	const rows = 8
	lease := 2 * time.Second
	e := newEnv(t, 1, func(c *broker.Config) { c.ClaimLease, c.RedrainInterval = lease, 100*time.Millisecond })
	mesh := e.newMesh("SlowAck")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	rc := e.raw(0)
	f := helloFrame(bob, time.Now())
	f["capabilities"] = []string{"client_ack"}
	rc.send(f)
	rc.expectFrame("hello_ack")
	for i := range rows {
		q := &meshd.QueuedMessage{MeshID: mesh.ID, SenderMemberID: alice.member.ID, TargetSpec: bob.key.Pubkey,
			Priority: meshd.PriorityNow, Ciphertext: fmt.Sprintf("row %d", i)}
		if err := e.st.Enqueue(context.Background(), q, false); err != nil {
			t.Fatal(err)
		}
	}
	pushes := make(chan string, 4*rows)
	go func() {
		defer close(pushes)
		for {
			m, ce, err := rc.next(30 * time.Second)
			if err != nil || ce != nil {
				return
			}
			if m["type"] == "push" {
				pushes <- m["messageId"].(string)
			}
		}
	}()
	seen := map[string]int{}
	// Ack one row every 300 ms: the last acks come well after the first
	// rows' lease ended, while the client keeps making progress.
	for len(seen) < rows {
		id := <-pushes
		seen[id]++
		if seen[id] == 1 {
			time.Sleep(300 * time.Millisecond)
			rc.send(map[string]any{"type": "client_ack", "brokerMessageId": id})
		}
	}
	time.Sleep(lease) // a re-push would be due by now
	rc.ws.Close()
	for id := range pushes {
		seen[id]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("row %s pushed %d times on one live socket", id, n)
		}
	}
}
