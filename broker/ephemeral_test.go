package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/client"
)

// An ephemeral hello (A.3-32) is invisible to the other peers: not in
// peers_list, no peer_joined, and its close ends the presence at once
// with no lease, no peer_left and no peer_state. It still sends.
func TestEphemeralPresenceIsInvisible(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Ephemeral")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	// Both of bob's connections go to replica 1: its events reach alice
	// in the order they were published.
	oneShot := e.dial(1, bob, func(c *client.Config) { c.Ephemeral = true; c.SessionID = "one-shot" })
	presence := oneShot.HelloAck().PresenceID
	ctx := context.Background()
	for _, c := range []*client.Client{a, oneShot} {
		peers, err := c.ListPeers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range peers {
			if p.MemberPubkey == bob.key.Pubkey {
				t.Fatalf("the ephemeral connection is listed: %+v", p)
			}
		}
	}
	sendOK(t, oneShot, alice.key.Pubkey, meshd.PriorityNow, "from a one-shot")
	if m := anyPush(t, a); m.System() || string(m.Plaintext) != "from a one-shot" {
		t.Fatalf("first push to alice: %+v", m.Push) // a peer_joined would come first
	}
	_ = oneShot.Close()
	waitFor(t, 10*time.Second, "the ephemeral presence to end", func() bool {
		return queryInt(t, e.dsn, `SELECT count(*) FROM mesh.presence WHERE id = $1 AND disconnected_at IS NOT NULL AND lease_until IS NULL`, presence) == 1
	})
	if n := queryInt(t, e.dsn, `SELECT count(*) FROM mesh.peer_state WHERE member_id = $1`, bob.member.ID); n != 0 {
		t.Fatal("an ephemeral connection saved peer_state")
	}
	// Bob's normal connection is the first system event alice gets.
	e.dial(1, bob, nil)
	if m := anyPush(t, a); !m.System() || m.Push.Event != "peer_joined" {
		t.Fatalf("next push to alice: %q %+v", m.Push.Event, m.Push)
	}
}

// anyPush waits for c's next push, system events included.
func anyPush(t *testing.T, c *client.Client) client.Message {
	t.Helper()
	select {
	case m, ok := <-c.Pushes():
		if !ok {
			t.Fatal("push channel closed")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no push within 10 s")
	}
	return client.Message{}
}
