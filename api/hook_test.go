package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
)

// postHook POSTs body to /hook/set-status of replica r.
func postHook(t *testing.T, r *replica, body io.Reader) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.hs.URL+"/hook/set-status", body)
	req.Header.Set("Content-Type", "application/json")
	code, m, h := doJSON(t, req)
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return code, m
}

// hook POSTs {cwd, pid, status} (pid 0 is left out) and returns the reply.
func hook(t *testing.T, r *replica, cwd string, pid int, status string) (int, map[string]any) {
	t.Helper()
	req := map[string]any{"cwd": cwd, "status": status, "session_id": "s"}
	if pid != 0 {
		req["pid"] = pid
	}
	data, _ := json.Marshal(req)
	return postHook(t, r, strings.NewReader(string(data)))
}

// hookOK posts a hook that must succeed: {ok:true} or {ok:true,
// pending:true}, never presence ids (issue 12: not an oracle).
func hookOK(t *testing.T, r *replica, cwd string, pid int, status string) {
	t.Helper()
	code, rep := hook(t, r, cwd, pid, status)
	_, pending := rep["pending"]
	if code != http.StatusOK || rep["ok"] != true || len(rep) != 1 && !(len(rep) == 2 && pending) {
		t.Fatalf("hook %s %d %s: %d %v, want 200 {ok:true}", cwd, pid, status, code, rep)
	}
}

// presenceOf reads presence id of meshID from Postgres.
func presenceOf(t *testing.T, e *env, meshID, id string) meshd.Presence {
	t.Helper()
	peers, err := e.st.ListPeers(context.Background(), meshID)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("presence %s not live in mesh %s", id, meshID)
	return meshd.Presence{}
}

func wantStatus(t *testing.T, e *env, meshID, id string, st meshd.Status, src meshd.StatusSource) {
	t.Helper()
	if p := presenceOf(t, e, meshID, id); p.Status != st || p.StatusSource != src {
		t.Fatalf("presence %s is %s/%s, want %s/%s", id, p.Status, p.StatusSource, st, src)
	}
}

// onlyReader hides the length of its reader so the request is chunked.
type onlyReader struct{ io.Reader }

// Hostile and malformed hook bodies, each named by the expected answer
// (B.6.4, B.9.2, integration/health.test.ts 413 case); a valid request
// after them still works.
func TestHookRejections(t *testing.T) {
	e := newEnv(t, 1, func(_ *broker.Config, c *api.Config) { c.MaxMessageBytes = 512 })
	r := e.replicas[0]
	big := `{"cwd":"/big","status":"idle","pad":"` + strings.Repeat("a", 600) + `"}`
	tests := []struct {
		name      string
		body      io.Reader
		wantCode  int
		wantError string // prefix
	}{
		{"payload_too_large_413", strings.NewReader(big), 413, "payload too large"},
		{"payload_too_large_chunked_413", onlyReader{strings.NewReader(big)}, 413, "payload too large"},
		{"invalid_json_400", strings.NewReader(`{"cwd":`), 400, "invalid JSON: "},
		{"empty_body_400", strings.NewReader(``), 400, "invalid JSON: "},
		{"cwd_not_string_400", strings.NewReader(`{"cwd":7,"status":"idle"}`), 400, "invalid JSON: cwd: unexpected number"},
		{"pid_out_of_range_400", strings.NewReader(`{"cwd":"/p","pid":99999999999,"status":"idle"}`), 400, "invalid JSON: pid"},
		{"invalid_status_400", strings.NewReader(`{"cwd":"/p","pid":1,"status":"sleeping"}`), 400, "invalid_status"},
		{"dnd_from_hook_400", strings.NewReader(`{"cwd":"/p","pid":1,"status":"dnd"}`), 400, "invalid_status"},
		{"missing_cwd_200_not_ok", strings.NewReader(`{"pid":1,"status":"idle"}`), 200, "cwd and status required"},
		{"missing_status_200_not_ok", strings.NewReader(`{"cwd":"/p","pid":2}`), 200, "cwd and status required"},
		{"null_body_200_not_ok", strings.NewReader(`null`), 200, "cwd and status required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, rep := postHook(t, r, tt.body)
			if code != tt.wantCode || rep["ok"] != false || !strings.HasPrefix(rep["error"].(string), tt.wantError) {
				t.Fatalf("got %d %v, want %d {ok:false, error:%q…}", code, rep, tt.wantCode, tt.wantError)
			}
		})
	}
	if code, rep := hook(t, r, "/p", 3, "working"); code != 200 || rep["ok"] != true || rep["pending"] != true {
		t.Fatalf("valid hook after rejections: %d %v", code, rep)
	}
	resp, err := http.Get(r.hs.URL + "/hook/set-status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /hook/set-status = %d, want 404", resp.StatusCode)
	}
	if got := counter(t, r, "broker_hook_requests_total"); got != float64(len(tests)+1) {
		t.Fatalf("broker_hook_requests_total = %v, want %d", got, len(tests)+1)
	}
	if got := counter(t, r, "broker_hook_requests_rate_limited_total"); got != 0 {
		t.Fatalf("rate limited = %v", got)
	}
}

// HOOK_RATE_LIMIT_PER_MIN=5: the 6th request of one (pid, cwd) gets 429
// while other keys still get 200 (integration/health.test.ts). The limit
// applies before validation, and unparseable bodies share the key "0:".
func TestHookRateLimit(t *testing.T) {
	e := newEnv(t, 1, func(_ *broker.Config, c *api.Config) { c.HookRateLimitPerMin = 5 })
	r := e.replicas[0]
	for i := 0; i < 5; i++ {
		hookOK(t, r, "/work/limited", 42, "working")
	}
	if code, rep := hook(t, r, "/work/limited", 42, "working"); code != 429 || rep["ok"] != false || rep["error"] != "rate limited" {
		t.Fatalf("6th request: %d %v, want 429 rate limited", code, rep)
	}
	hookOK(t, r, "/work/limited", 43, "working") // another pid
	hookOK(t, r, "/work/other", 42, "working")   // another cwd
	for i := 0; i < 5; i++ {
		if code, _ := postHook(t, r, strings.NewReader("{bad")); code != 400 {
			t.Fatalf("bad JSON %d: %d, want 400", i, code)
		}
	}
	tests := []struct {
		name string
		body string
	}{
		{"bad_json_6th_rate_limited_429", "{bad"},
		{"no_pid_no_cwd_same_key_429", `{"status":"idle"}`},
		{"invalid_status_rate_limited_first_429", `{"cwd":"/work/limited","pid":42,"status":"nope"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, rep := postHook(t, r, strings.NewReader(tt.body)); code != 429 || rep["error"] != "rate limited" {
				t.Fatalf("got %d %v, want 429", code, rep)
			}
		})
	}
	if got := counter(t, r, "broker_hook_requests_rate_limited_total"); got != 1+float64(len(tests)) {
		t.Fatalf("broker_hook_requests_rate_limited_total = %v, want %d", got, 1+len(tests))
	}
	if got := counter(t, r, "broker_hook_requests_total"); got != 5+1+2+5+float64(len(tests)) {
		t.Fatalf("broker_hook_requests_total = %v", got)
	}
}

// A hook before the session connects is stored as pending and applied when
// the presence is created; the newest wins; one older than 10 s is ignored
// (B.6.5, B.17 broker.test.ts), over HTTP.
func TestHookPendingAppliedOnConnect(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Pending")
	tests := []struct {
		name       string
		hooks      []string
		age        time.Duration // pending rows made this old before connecting
		wantStatus meshd.Status
		wantSource meshd.StatusSource
	}{
		{"pending_applied_on_connect", []string{"working"}, 0, meshd.StatusWorking, meshd.SourceHook},
		{"newest_pending_wins", []string{"working", "idle"}, 0, meshd.StatusIdle, meshd.SourceHook},
		{"newest_pending_wins_working", []string{"idle", "working"}, 0, meshd.StatusWorking, meshd.SourceHook},
		{"pending_older_than_10s_ignored", []string{"working"}, 11 * time.Second, meshd.StatusIdle, meshd.SourceJSONL},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cwd, pid := "/work/"+tt.name, 9000+i
			for _, st := range tt.hooks {
				code, rep := hook(t, e.replicas[0], cwd, pid, st)
				if code != 200 || rep["ok"] != true || rep["pending"] != true || len(rep) != 2 {
					t.Fatalf("hook before connect: %d %v, want {ok:true, pending:true}", code, rep)
				}
				time.Sleep(5 * time.Millisecond) // distinct created_at
			}
			if tt.age > 0 {
				e.cliExec(`UPDATE mesh.pending_status SET created_at = created_at - make_interval(secs => $3)
WHERE pid = $1 AND cwd = $2`, pid, cwd, tt.age.Seconds())
			}
			id := e.enroll(mesh, fmt.Sprint("peer", i))
			c := e.dial(0, id, func(cfg *client.Config) { cfg.CWD, cfg.PID = cwd, pid })
			wantStatus(t, e, mesh.ID, c.HelloAck().PresenceID, tt.wantStatus, tt.wantSource)
			applied := e.cliInt(`SELECT count(*) FROM mesh.pending_status
WHERE pid = $1 AND cwd = $2 AND applied_at IS NOT NULL`, pid, cwd)
			if want := len(tt.hooks); tt.age > 0 && applied != 0 || tt.age == 0 && applied != want {
				t.Fatalf("%d pending rows applied", applied)
			}
		})
	}
}

// A manual DND presence is never changed by a hook ("DND is sacred",
// B.6.4, B.17).
func TestHookLeavesDNDAlone(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("DND")
	bob := e.enroll(mesh, "bob")
	b := e.dial(0, bob, func(cfg *client.Config) { cfg.CWD, cfg.PID = "/work/dnd", 31 })
	id := b.HelloAck().PresenceID
	e.cliExec(`UPDATE mesh.presence SET status = 'dnd', status_source = 'manual' WHERE id = $1`, id)
	for _, st := range []string{"idle", "working"} {
		hookOK(t, e.replicas[0], "/work/dnd", 31, st)
		wantStatus(t, e, mesh.ID, id, meshd.StatusDND, meshd.SourceManual)
	}
}

// One hook updates every live presence of the same (pid, cwd), in every
// mesh (A.3-14), and only those; without a pid it falls back to the newest
// live presence with that cwd (B.6.4); an unknown pid is pending, never a
// fallback (issue 12).
func TestHookUpdatesEveryMesh(t *testing.T) {
	e := newEnv(t, 2, nil)
	x, y := e.newMesh("MeshX"), e.newMesh("MeshY")
	const cwd = "/work/shared-project"
	session := func(cfg *client.Config) { cfg.CWD, cfg.PID = cwd, 777 }
	ax := e.dial(0, e.enroll(x, "alice"), session)
	ay := e.dial(1, e.enroll(y, "alice"), session)
	other := e.dial(0, e.enroll(x, "carol"), func(cfg *client.Config) { cfg.CWD, cfg.PID = cwd, 778 })
	idX, idY, idOther := ax.HelloAck().PresenceID, ay.HelloAck().PresenceID, other.HelloAck().PresenceID

	hookOK(t, e.replicas[0], cwd, 777, "working")
	wantStatus(t, e, x.ID, idX, meshd.StatusWorking, meshd.SourceHook)
	wantStatus(t, e, y.ID, idY, meshd.StatusWorking, meshd.SourceHook)
	wantStatus(t, e, x.ID, idOther, meshd.StatusIdle, meshd.SourceJSONL)

	if code, rep := hook(t, e.replicas[1], cwd, 12345, "working"); code != 200 || rep["ok"] != true || rep["pending"] != true {
		t.Fatalf("unknown pid: %d %v, want pending", code, rep)
	}
	wantStatus(t, e, x.ID, idOther, meshd.StatusIdle, meshd.SourceJSONL)
	hookOK(t, e.replicas[1], cwd, 0, "working")
	wantStatus(t, e, x.ID, idOther, meshd.StatusWorking, meshd.SourceHook)
}

// B.17 broker.test.ts over HTTP, across replicas: hook working → a next DM
// is held while a now DM goes through → hook idle → the held DM is
// delivered with its ciphertext and sender. The sender is on replica 0, the
// recipient on replica 1 and the hook hits replica 0; the periodic re-drain
// is off, so only the hook's NATS wake-up can deliver it.
func TestHookIdleDeliversHeldMessageAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, func(c *broker.Config, _ *api.Config) { c.RedrainInterval = time.Hour })
	mesh := e.newMesh("Wake")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(1, bob, func(cfg *client.Config) { cfg.CWD, cfg.PID = "/work/bob-session", 555 })
	bobID := b.HelloAck().PresenceID

	hookOK(t, e.replicas[0], "/work/bob-session", 555, "working")
	wantStatus(t, e, mesh.ID, bobID, meshd.StatusWorking, meshd.SourceHook)
	ack, err := a.Send(context.Background(), bob.key.Pubkey, meshd.PriorityNext, []byte("held until idle"))
	if err != nil || !ack.Queued {
		t.Fatalf("send: %+v %v", ack, err)
	}
	held := ack.MessageID
	if _, err := a.Send(context.Background(), bob.key.Pubkey, meshd.PriorityNow, []byte("urgent")); err != nil {
		t.Fatal(err)
	}
	if m := recvPush(t, b, 5*time.Second); string(m.Plaintext) != "urgent" {
		t.Fatalf("first push %q, want the now message", m.Plaintext)
	}
	select {
	case m := <-b.Pushes():
		if !m.System() {
			t.Fatalf("next message delivered while working: %q", m.Plaintext)
		}
	case <-time.After(500 * time.Millisecond):
	}

	hookOK(t, e.replicas[0], "/work/bob-session", 555, "idle")
	m := recvPush(t, b, 5*time.Second)
	if m.Push.MessageID != held || string(m.Plaintext) != "held until idle" || m.DecryptErr != nil ||
		m.Push.SenderPubkey != alice.key.Pubkey || m.Push.Priority != "next" {
		t.Fatalf("held push %+v plaintext %q err %v", m.Push, m.Plaintext, m.DecryptErr)
	}
	wantStatus(t, e, mesh.ID, bobID, meshd.StatusIdle, meshd.SourceHook)
	if got := counter(t, e.replicas[1], "broker_redrain_triggers_total"); got != 0 {
		t.Fatalf("delivered by the periodic re-drain (%v), not the hook wake-up", got)
	}
}
