package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/testenv"
)

// schedule sends a schedule frame and returns the scheduled_ack.
func schedule(t *testing.T, c *client.Client, fields map[string]any) map[string]any {
	t.Helper()
	f := map[string]any{"type": "schedule"}
	for k, v := range fields {
		f[k] = v
	}
	return testenv.Request(t, c, f, "scheduled_ack")
}

// makeDue is the test hook that makes a schedule's next occurrence due now.
func makeDue(t *testing.T, e *testenv.Env, id string) {
	t.Helper()
	testenv.Exec(t, e.DSN, `UPDATE mesh.scheduled_message SET deliver_at = now() - interval '1 second' WHERE id = $1`, id)
}

func firedCount(t *testing.T, e *testenv.Env, id string) int {
	t.Helper()
	return testenv.QueryInt(t, e.DSN, `SELECT fired_count FROM mesh.scheduled_message WHERE id = $1`, id)
}

// A DM scheduled 1 s ahead from a socket on replica 0 that then closes is
// delivered exactly once, as the member, to the recipient on replica 1,
// with the schedulers of both replicas running at once.
func TestScheduledDMFiresOnceAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, 2, testenv.Options{})
	mesh := e.NewMesh("sched")
	alice, bob := e.Enroll(mesh, "alice"), e.Enroll(mesh, "bob")
	a := e.Dial(0, alice, nil)
	b := e.Dial(1, bob, nil)

	at := time.Now().Add(time.Second).UnixMilli()
	ack := schedule(t, a, map[string]any{"to": bob.Key.Pubkey, "message": "stand-up in 5", "deliverAt": at, "_reqId": "q1"})
	id, _ := ack["scheduledId"].(string)
	if id == "" || ack["deliverAt"] != float64(at) || ack["_reqId"] != "q1" || ack["cron"] != nil {
		t.Fatalf("scheduled_ack = %v", ack)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.RunJob(t, e.Replicas[0].Jobs.Scheduler)
	testenv.RunJob(t, e.Replicas[1].Jobs.Scheduler)

	m := testenv.RecvPush(t, b, 10*time.Second)
	if string(m.Plaintext) != "stand-up in 5" || m.Push.SenderPubkey != alice.Key.Pubkey || m.Push.Priority != "now" {
		t.Fatalf("push = %+v plaintext %q", m.Push, m.Plaintext)
	}
	select {
	case dup := <-b.Pushes():
		t.Fatalf("second push %+v", dup.Push)
	case <-time.After(1500 * time.Millisecond):
	}
	if n := firedCount(t, e, id); n != 1 {
		t.Fatalf("fired_count = %d, want 1", n)
	}
	if n := testenv.QueryInt(t, e.DSN, `SELECT count(*) FROM mesh.message_queue WHERE target_spec = $1`, bob.Key.Pubkey); n != 1 {
		t.Fatalf("queue rows = %d, want 1", n)
	}
}

// A cron schedule fires once per occurrence and re-arms; cancel stops it;
// list_scheduled shows it while pending.
func TestScheduledCronFiresEachOccurrence(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, 2, testenv.Options{})
	mesh := e.NewMesh("cron")
	alice, bob := e.Enroll(mesh, "alice"), e.Enroll(mesh, "bob")
	a, b := e.Dial(0, alice, nil), e.Dial(1, bob, nil)

	before := time.Now()
	ack := schedule(t, a, map[string]any{"to": bob.Key.Pubkey, "message": "tick", "cron": "* * * * *"})
	id := ack["scheduledId"].(string)
	first := time.UnixMilli(int64(ack["deliverAt"].(float64)))
	if ack["cron"] != "* * * * *" || !first.After(before) || first.Sub(before) > time.Minute+time.Second || first.Second() != 0 {
		t.Fatalf("scheduled_ack = %v (first %v)", ack, first)
	}
	list := testenv.Request(t, a, map[string]any{"type": "list_scheduled"}, "scheduled_list")["messages"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != id || list[0].(map[string]any)["cron"] != "* * * * *" {
		t.Fatalf("scheduled_list = %v", list)
	}

	lj := e.Replicas[1].Jobs
	for i := 1; i <= 3; i++ {
		makeDue(t, e, id)
		if n := lj.FireDueSchedules(context.Background()); n != 1 {
			t.Fatalf("occurrence %d: pass saw %d due", i, n)
		}
		if m := testenv.RecvPush(t, b, 5*time.Second); string(m.Plaintext) != "tick" {
			t.Fatalf("occurrence %d: push %+v", i, m.Push)
		}
		if got := firedCount(t, e, id); got != i {
			t.Fatalf("fired_count = %d, want %d", got, i)
		}
		if d := testenv.QueryInt(t, e.DSN, `SELECT (deliver_at > now())::int FROM mesh.scheduled_message WHERE id = $1`, id); d != 1 {
			t.Fatal("cron row not re-armed into the future")
		}
	}

	res := testenv.Request(t, a, map[string]any{"type": "cancel_scheduled", "scheduledId": id, "_reqId": "c"}, "cancel_scheduled_ack")
	if res["ok"] != true || res["scheduledId"] != id || res["_reqId"] != "c" {
		t.Fatalf("cancel_scheduled_ack = %v", res)
	}
	makeDue(t, e, id)
	if n := lj.FireDueSchedules(context.Background()); n != 0 {
		t.Fatalf("cancelled schedule still due (%d)", n)
	}
	if got := firedCount(t, e, id); got != 3 {
		t.Fatalf("fired_count = %d after cancel, want 3", got)
	}
	if list := testenv.Request(t, a, map[string]any{"type": "list_scheduled"}, "scheduled_list")["messages"].([]any); len(list) != 0 {
		t.Fatalf("scheduled_list after cancel = %v", list)
	}
	res = testenv.Request(t, a, map[string]any{"type": "cancel_scheduled", "scheduledId": id}, "cancel_scheduled_ack")
	if res["ok"] != false {
		t.Fatalf("second cancel = %v, want ok:false", res)
	}
}

// A scheduled broadcast fired on one replica reaches peers on both with
// subtype reminder and the sender fields (A.3-13); a scheduled DM to a
// recipient whose grants block the member is not delivered.
func TestScheduledBroadcastAndGrants(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, 2, testenv.Options{})
	mesh := e.NewMesh("remind")
	alice, bob, carol := e.Enroll(mesh, "alice"), e.Enroll(mesh, "bob"), e.Enroll(mesh, "carol")
	a, b, c := e.Dial(0, alice, nil), e.Dial(0, bob, nil), e.Dial(1, carol, nil)

	schedule(t, a, map[string]any{"to": "*", "message": "lunch", "deliverAt": time.Now().Add(-time.Minute).UnixMilli(), "subtype": "reminder"})
	if n := e.Replicas[1].Jobs.FireDueSchedules(context.Background()); n != 1 {
		t.Fatalf("due = %d, want 1 (a past one-shot fires at once)", n)
	}
	for _, cl := range []*client.Client{b, c} {
		m := testenv.RecvPush(t, cl, 5*time.Second)
		p := m.Push
		if string(m.Plaintext) != "lunch" || p.Subtype != "reminder" || p.SenderMemberPubkey != alice.Key.Pubkey ||
			p.SenderName != "alice" || p.Nonce != "" || p.Priority != "now" {
			t.Fatalf("reminder push = %+v plaintext %q", p, m.Plaintext)
		}
	}

	testenv.Exec(t, e.DSN, `UPDATE mesh.member SET peer_grants = jsonb_build_object($1::text, '["read"]'::jsonb) WHERE id = $2`,
		alice.Key.Pubkey, carol.Member.ID)
	id := schedule(t, a, map[string]any{"to": carol.Key.Pubkey, "message": "blocked", "deliverAt": time.Now().UnixMilli()})["scheduledId"].(string)
	dropped := testenv.Counter(t, e.Replicas[0].Reg, "broker_messages_dropped_by_grant_total", "cap", "dm")
	testenv.WaitFor(t, 5*time.Second, "the blocked occurrence to fire", func() bool {
		e.Replicas[0].Jobs.FireDueSchedules(context.Background())
		return firedCount(t, e, id) == 1
	})
	if d := testenv.Counter(t, e.Replicas[0].Reg, "broker_messages_dropped_by_grant_total", "cap", "dm") - dropped; d != 1 {
		t.Fatalf("dropped_by_grant{dm} += %v, want 1", d)
	}
	if n := testenv.QueryInt(t, e.DSN, `SELECT count(*) FROM mesh.message_queue WHERE target_spec = $1`, carol.Key.Pubkey); n != 0 {
		t.Fatalf("blocked DM queued %d rows", n)
	}
}

// Rejections of schedule, each named by the error code; the socket keeps
// working after each.
func TestScheduleRejections(t *testing.T) {
	t.Parallel()
	e := testenv.New(t, 1, testenv.Options{})
	mesh := e.NewMesh("schedrej")
	alice, bob := e.Enroll(mesh, "alice"), e.Enroll(mesh, "bob")
	a := e.Dial(0, alice, nil)
	now := time.Now().UnixMilli()
	tests := []struct {
		name, code, message string
		frame               map[string]any
	}{
		{"invalid_cron_garbage", "invalid_cron", "Invalid cron expression: not a cron",
			map[string]any{"to": "*", "message": "x", "cron": "not a cron"}},
		{"invalid_cron_six_fields", "invalid_cron", "Invalid cron expression: 0 0 * * * *",
			map[string]any{"to": "*", "message": "x", "cron": "0 0 * * * *"}},
		{"invalid_cron_macro", "invalid_cron", "Invalid cron expression: @hourly",
			map[string]any{"to": "*", "message": "x", "cron": "@hourly"}},
		{"invalid_cron_names", "invalid_cron", "Invalid cron expression: 0 9 * * MON",
			map[string]any{"to": "*", "message": "x", "cron": "0 9 * * MON"}},
		{"invalid_cron_never", "invalid_cron", "Invalid cron expression: 0 0 31 2 *",
			map[string]any{"to": "*", "message": "x", "cron": "0 0 31 2 *"}},
		{"unsupported_target_topic", "unsupported_target", "",
			map[string]any{"to": "#topic", "message": "x", "deliverAt": now}},
		{"invalid_message_no_to", "invalid_message", "", map[string]any{"message": "x", "deliverAt": now}},
		{"invalid_message_no_message", "invalid_message", "", map[string]any{"to": "*", "deliverAt": now}},
		{"invalid_message_no_time", "invalid_message", "", map[string]any{"to": "*", "message": "x"}},
		{"invalid_message_time_range", "invalid_message", "", map[string]any{"to": "*", "message": "x", "deliverAt": 1e300}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := map[string]any{"type": "schedule"}
			for k, v := range tt.frame {
				f[k] = v
			}
			se := testenv.RequestError(t, a, f)
			if se.Code != tt.code || (tt.message != "" && se.Message != tt.message) {
				t.Fatalf("error %+v, want %s %q", se, tt.code, tt.message)
			}
			schedule(t, a, map[string]any{"to": bob.Key.Pubkey, "message": "still works", "deliverAt": now + 3600_000})
		})
	}
	if se := testenv.RequestError(t, a, map[string]any{"type": "cancel_scheduled"}); se.Code != "invalid_message" {
		t.Fatalf("cancel without id: %+v", se)
	}
	n := len(testenv.Request(t, a, map[string]any{"type": "list_scheduled"}, "scheduled_list")["messages"].([]any))
	if n != len(tests) {
		t.Fatalf("pending = %d, want %d", n, len(tests))
	}
}
