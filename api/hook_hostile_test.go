package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
)

// rawHook posts body with contentType (none when "") and an Origin header,
// and returns the status, the JSON reply and the headers.
func rawHook(t *testing.T, r *replica, contentType, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.hs.URL+"/hook/set-status", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Origin", "https://evil.example")
	return doJSON(t, req)
}

// Issue 12 item 1, across two replicas: an outsider who knows a session's
// cwd can neither set it dnd, nor steer it with a made-up pid, nor learn
// presence ids, nor bypass the rate limit by varying the pid, nor post from
// a browser page (no JSON content type, no CORS for unlisted origins).
func TestHookForgeryRefused(t *testing.T) {
	e := newEnv(t, 2, func(_ *broker.Config, c *api.Config) { c.HookRateLimitPerIPPerMin = 12 })
	mesh := e.newMesh("Forge")
	const cwd = "/home/victim/project"
	victim := e.dial(1, e.enroll(mesh, "victim"), func(cfg *client.Config) { cfg.CWD, cfg.PID = cwd, 4100 })
	id := victim.HelloAck().PresenceID
	r := e.replicas[0]

	t.Run("dnd_from_hook_400_invalid_status", func(t *testing.T) {
		code, rep, _ := rawHook(t, r, "application/json", `{"cwd":"`+cwd+`","pid":4100,"status":"dnd"}`)
		if code != 400 || rep["ok"] != false || rep["error"] != "invalid_status" {
			t.Fatalf("%d %v", code, rep)
		}
		wantStatus(t, e, mesh.ID, id, meshd.StatusIdle, meshd.SourceJSONL)
	})
	t.Run("forged_pid_is_pending_not_the_victim", func(t *testing.T) {
		code, rep, _ := rawHook(t, r, "application/json", `{"cwd":"`+cwd+`","pid":999,"status":"working"}`)
		if code != 200 || rep["ok"] != true || rep["pending"] != true || len(rep) != 2 {
			t.Fatalf("%d %v, want exactly {ok:true, pending:true}", code, rep)
		}
		wantStatus(t, e, mesh.ID, id, meshd.StatusIdle, meshd.SourceJSONL)
	})
	t.Run("reply_names_no_presence", func(t *testing.T) {
		code, rep, _ := rawHook(t, r, "application/json; charset=utf-8", `{"cwd":"`+cwd+`","pid":4100,"status":"working"}`)
		if code != 200 || len(rep) != 1 || rep["ok"] != true {
			t.Fatalf("%d %v, want exactly {ok:true}", code, rep)
		}
		wantStatus(t, e, mesh.ID, id, meshd.StatusWorking, meshd.SourceHook)
	})
	t.Run("hook_dnd_is_not_sacred", func(t *testing.T) {
		// A dnd an earlier (unauthenticated) hook wrote is released by the
		// next hook; only a manual dnd holds.
		e.cliExec(`UPDATE mesh.presence SET status = 'dnd', status_source = 'hook' WHERE id = $1`, id)
		hookOK(t, r, cwd, 4100, "idle")
		wantStatus(t, e, mesh.ID, id, meshd.StatusIdle, meshd.SourceHook)
	})
	for _, tt := range []struct{ name, contentType string }{
		{"no_content_type_415", ""},
		{"text_plain_415", "text/plain"},
		{"form_415", "application/x-www-form-urlencoded"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, rep, hdr := rawHook(t, r, tt.contentType, `{"cwd":"`+cwd+`","pid":4100,"status":"working"}`)
			if code != 415 || rep["ok"] != false || rep["error"] != "unsupported_media_type" {
				t.Fatalf("%d %v", code, rep)
			}
			if hdr.Get("Access-Control-Allow-Origin") != "" {
				t.Fatalf("CORS header for an unlisted origin: %v", hdr)
			}
			wantStatus(t, e, mesh.ID, id, meshd.StatusIdle, meshd.SourceHook)
		})
	}
	t.Run("no_cors_by_default_on_every_route", func(t *testing.T) {
		for _, path := range []string{"/hook/set-status", "/cli/meshes", "/health", "/join"} {
			req, _ := http.NewRequest(http.MethodOptions, r.hs.URL+path, nil)
			req.Header.Set("Origin", "https://evil.example")
			req.Header.Set("Access-Control-Request-Method", "POST")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Fatalf("OPTIONS %s: Access-Control-Allow-Origin %q", path, got)
			}
		}
	})
	t.Run("varying_pid_hits_the_per_ip_limit_429", func(t *testing.T) {
		// 7 requests so far from this IP; 5 more with fresh pids pass,
		// then the IP's bucket is empty whatever the pid.
		for i := 0; i < 5; i++ {
			if code, _, _ := rawHook(t, r, "application/json", fmt.Sprintf(`{"cwd":"/x","pid":%d,"status":"idle"}`, 20000+i)); code != 200 {
				t.Fatalf("request %d: %d", i, code)
			}
		}
		code, rep, _ := rawHook(t, r, "application/json", `{"cwd":"/x","pid":30000,"status":"idle"}`)
		if code != 429 || rep["error"] != "rate limited" {
			t.Fatalf("%d %v, want 429", code, rep)
		}
		if got := counter(t, r, "broker_hook_requests_rate_limited_total"); got != 1 {
			t.Fatalf("rate limited %v", got)
		}
		// The other replica has its own bucket (B.10) and still serves.
		hookOK(t, e.replicas[1], cwd, 4100, "working")
	})
	if n := e.cliInt(`SELECT count(*) FROM mesh.pending_status WHERE status = 'dnd'`); n != 0 {
		t.Fatalf("%d pending dnd rows", n)
	}
}

// A hook body with U+0000 in a string is refused at decode (PostgreSQL text
// cannot hold it): 400 invalid_string, never a 500 with database text.
func TestHookRefusesNUL(t *testing.T) {
	e := newEnv(t, 1, nil)
	code, rep, _ := rawHook(t, e.replicas[0], "application/json", `{"cwd":"/tmp/x\u0000","pid":1,"status":"idle"}`)
	if code != 400 || rep["ok"] != false || rep["error"] != "invalid_string" {
		t.Fatalf("%d %v", code, rep)
	}
}
