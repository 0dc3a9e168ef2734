package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
)

// ready reads /health/ready of replica i.
func (e *env) ready(i int) (int, map[string]any) {
	e.t.Helper()
	resp, err := http.Get(e.replicas[i].hs.URL + "/health/ready")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// canaryRounds reads meshd_canary_seconds_count of replica i.
func (e *env) canaryRounds(i int) int {
	e.t.Helper()
	resp, err := http.Get(e.replicas[i].hs.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^meshd_canary_seconds_count (\d+)$`).FindSubmatch(body)
	if m == nil {
		e.t.Fatalf("no meshd_canary_seconds_count in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// The delivery canary proves the road: while the replica cannot get a row
// through it (here a real row lock on the system mesh's sender holds every
// canary enqueue at its foreign-key check), /health/ready turns 503
// delivery_stalled with the database and NATS still up; once the lock goes,
// rounds complete and the replica is ready again. Canary rows are never
// audited and are deleted.
func TestCanaryReadinessFlipsWhenDeliveryStalls(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) {
		c.CanaryStallAfter = 2 * time.Second
		c.CanaryInterval = 100 * time.Millisecond
	})
	waitFor(t, 30*time.Second, "first canary rounds", func() bool { return e.canaryRounds(0) >= 2 })
	if code, body := e.ready(0); code != http.StatusOK {
		t.Fatalf("ready before the stall: %d %v", code, body)
	}

	release := e.holding(`SELECT 1 FROM mesh.member WHERE id = $1 FOR UPDATE`, meshd.SystemMemberID)
	var stalled map[string]any
	waitFor(t, 30*time.Second, "readiness 503 delivery_stalled", func() bool {
		code, body := e.ready(0)
		stalled = body
		return code == http.StatusServiceUnavailable && hasReason(body, "delivery_stalled")
	})
	if stalled["db"] != "up" || stalled["nats"] != "up" || stalled["status"] != "not_ready" {
		t.Fatalf("stalled body %v: want db and nats up", stalled)
	}
	before := e.canaryRounds(0)

	release()
	waitFor(t, 30*time.Second, "readiness 200 again", func() bool {
		code, _ := e.ready(0)
		return code == http.StatusOK
	})
	if after := e.canaryRounds(0); after <= before {
		t.Fatalf("ready again without a completed round (%d → %d)", before, after)
	}
	if n := queryInt(t, e.dsn, `SELECT (SELECT count(*) FROM mesh.audit_outbox WHERE mesh_id = $1)
		+ (SELECT count(*) FROM mesh.audit_log WHERE mesh_id = $1)`, meshd.SystemMeshID); n != 0 {
		t.Fatalf("%d audit entries for canary rows", n)
	}
	// The stalled rounds' rows were committed late; later rounds claim and
	// delete them with their own.
	waitFor(t, 30*time.Second, "canary rows deleted", func() bool {
		return queryInt(t, e.dsn, `SELECT count(*) FROM mesh.message_queue WHERE mesh_id = $1
			AND created_at < now() - interval '1 second'`, meshd.SystemMeshID) == 0
	})
}

// Canary rows never reach a client: while rounds complete on the replica,
// connected members get exactly their own messages, and no hello resolves
// the system mesh's member.
func TestCanaryRowsNeverReachClients(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) {
		c.CanaryStallAfter = 2 * time.Second
		c.CanaryInterval = 50 * time.Millisecond
	})
	mesh := e.newMesh("Canary")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	ca, cb := e.dial(0, alice, nil), e.dial(0, bob, nil)
	start := e.canaryRounds(0)
	ids := map[string]bool{}
	for i := 0; i < 3; i++ {
		ids[sendOK(t, ca, bob.key.Pubkey, meshd.PriorityNow, "m"+strconv.Itoa(i))] = true
	}
	for i := 0; i < 3; i++ {
		if m := recvPush(t, cb, 10*time.Second); !ids[m.Push.MessageID] || m.Push.MeshID != mesh.ID {
			t.Fatalf("push %d is not one of alice's: %+v", i, m.Push)
		}
	}
	waitFor(t, 30*time.Second, "canary rounds while clients are connected", func() bool { return e.canaryRounds(0) >= start+3 })
	for _, c := range []*client.Client{ca, cb} {
		for len(c.Pushes()) > 0 {
			if m := <-c.Pushes(); m.Push.Subtype != "system" {
				t.Fatalf("unexpected push %+v", m.Push)
			}
		}
	}
	if _, _, err := e.st.LookupMember(context.Background(), meshd.SystemMeshID, "meshd-canary"); !errors.Is(err, meshd.ErrNotFound) {
		t.Fatalf("the system mesh's member resolves for a hello: %v", err)
	}
}
