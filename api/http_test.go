package api_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/broker"
)

var hexID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// Every response carries X-Request-Id: the caller's when it is a sane
// token, else a new one; api's error bodies quote it as requestId.
func TestRequestIDs(t *testing.T) {
	e := newEnv(t, 1, nil)
	tests := []struct {
		name, sent string
		keep       bool
	}{
		{"none_sent_is_generated", "", false},
		{"valid_is_echoed", "req-42.abc_DEF", true},
		{"space_is_replaced", "two words", false},
		{"too_long_is_replaced", strings.Repeat("x", 129), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.sent != "" {
				hdr = []string{"X-Request-Id", tt.sent}
			}
			r := cliDo(t, "POST", e.cliURL("/cli/mesh/create"), "", map[string]any{}, hdr...).expect(t, 401, "missing_bearer_token")
			id := r.header.Get("X-Request-Id")
			if (tt.keep && id != tt.sent) || (!tt.keep && !hexID.MatchString(id)) {
				t.Fatalf("X-Request-Id %q (sent %q)", id, tt.sent)
			}
			if r.body["requestId"] != id {
				t.Fatalf("body requestId %v, header %q", r.body["requestId"], id)
			}
		})
	}
	for _, path := range []string{"/health", "/nope", "/hook/set-status"} {
		r := cliDo(t, "POST", e.cliURL(path), "", "{")
		if !hexID.MatchString(r.header.Get("X-Request-Id")) {
			t.Fatalf("%s: no request id: %v", path, r.header)
		}
	}
	if r := cliDo(t, "POST", e.cliURL("/hook/set-status"), "", "{"); r.body["requestId"] != r.header.Get("X-Request-Id") {
		t.Fatalf("hook error without requestId: %s", r.raw)
	}
}

// A database failure answers a generic 500 with an error id, never the
// database's text; the log has the error under that id.
func TestInternalErrorHidesDatabaseText(t *testing.T) {
	logs := &cliLogBuffer{}
	e := newEnv(t, 1, func(_ *broker.Config, c *api.Config) { c.Logger = zerolog.New(logs) })
	tok := e.cliToken("owner")
	e.cliExec(`ALTER TABLE mesh.cli_session RENAME TO cli_session_away`)
	defer e.cliExec(`ALTER TABLE mesh.cli_session_away RENAME TO cli_session`)
	r := cliDo(t, "GET", e.cliURL("/cli/meshes"), tok, nil).expect(t, 500, "internal_error")
	errID, _ := r.body["errorId"].(string)
	if !hexID.MatchString(errID) || r.body["requestId"] != r.header.Get("X-Request-Id") || r.body["ok"] != false {
		t.Fatalf("body %s", r.raw)
	}
	if strings.Contains(r.raw, "cli_session") || strings.Contains(r.raw, "relation") {
		t.Fatalf("database text leaked: %s", r.raw)
	}
	if !strings.Contains(logs.String(), `"error_id":"`+errID+`"`) || !strings.Contains(logs.String(), "cli_session") {
		t.Fatalf("log lacks the error under %s: %s", errID, logs.String())
	}
	if !strings.Contains(logs.String(), `"path":"/cli/meshes","status":500`) {
		t.Fatalf("no access log line: %s", logs.String())
	}
}

// The control plane's series of docs/protocol.md B.9.1 are exported, at 0,
// on the replica's /metrics.
func TestMetricsExportControlPlaneSeries(t *testing.T) {
	e := newEnv(t, 1, nil)
	text := cliDo(t, "GET", e.cliURL("/metrics"), "", nil).raw
	for _, name := range []string{"broker_legacy_auth_hits_total", "broker_hook_requests_total", "broker_hook_requests_rate_limited_total"} {
		if !strings.Contains(text, "# TYPE "+name+" counter\n") || !strings.Contains(text, "\n"+name+" 0\n") {
			t.Errorf("%s not exported at 0", name)
		}
	}
}
