package broker_test

import (
	"strings"
	"testing"
	"time"
)

// Issue 11 item 3: a send that cannot be committed (PostgreSQL down) gets
// its own ack {id, queued:false, error:"unavailable: …"} — matched by the
// send's id, so a client that sends no _reqId still knows which send
// failed — never an error frame with database text. The socket stays up.
func TestSendWhileDatabaseDownGetsItsOwnAck(t *testing.T) {
	pg, st := ownCluster(t)
	e := onStore(t, st, pg.URL)
	e.addReplica("node-0")
	mesh := e.newMesh("Down")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.raw(0)
	a.send(helloFrame(alice, time.Now()))
	a.expectFrame("hello_ack")

	if err := pg.StopServer(); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{bob.key.Pubkey, "*"} { // recipient lookup fails; enqueue fails
		id := "send-" + target[:1]
		a.send(map[string]any{"type": "send", "id": id, "targetSpec": target, "priority": "now",
			"nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"})
		for {
			// A failing statement is bounded by the batch timeout (10 s) and
			// the handler timeout (15 s), not by the harness's 5 s read.
			f, ce, err := a.next(30 * time.Second)
			if err != nil || ce != nil {
				t.Fatalf("send to %s while the database is down: no ack (%v %v)", target, err, ce)
			}
			if f["type"] != "ack" || f["id"] != id {
				continue
			}
			if f["queued"] != false || !strings.HasPrefix(f["error"].(string), "unavailable: ") ||
				strings.Contains(f["error"].(string), "SQLSTATE") || strings.Contains(f["error"].(string), "dial") {
				t.Fatalf("send to %s while the database is down: %v", target, f)
			}
			break
		}
	}
	if n := counter(t, e.replicas[0], "broker_messages_rejected_total", "reason", "unavailable"); n != 2 {
		t.Fatalf("unavailable rejections = %v, want 2", n)
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	// The same socket works again once the database is back.
	waitFor(t, 30*time.Second, "a send queued after the restart", func() bool {
		a.send(map[string]any{"type": "send", "id": "after", "targetSpec": bob.key.Pubkey, "priority": "now",
			"nonce": "bm9uY2U=", "ciphertext": "Y2lwaGVy"})
		for {
			f, ce, err := a.next(30 * time.Second)
			if err != nil || ce != nil {
				t.Fatalf("after the restart: %v %v", err, ce)
			}
			if f["type"] == "ack" && f["id"] == "after" {
				return f["queued"] == true
			}
		}
	})
}
