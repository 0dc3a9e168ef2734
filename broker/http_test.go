package broker_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd/broker"
)

// Every socket-side metric of docs/protocol.md B.9.1 is exported with its type
// and labels (the control plane's are checked in api/).
func TestMetricsExportUpstreamSeries(t *testing.T) {
	e := newEnv(t, 1, nil)
	resp, err := http.Get(e.replicas[0].hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	want := []struct{ name, typ, sample string }{
		{"broker_connections_total", "counter", "broker_connections_total 0"},
		{"broker_connections_rejected_total", "counter", `broker_connections_rejected_total{reason="attestation_ttl_too_long"} 0`},
		{"broker_connections_active", "gauge", "broker_connections_active 0"},
		{"broker_messages_routed_total", "counter", `broker_messages_routed_total{priority="stream"} 0`},
		{"broker_messages_rejected_total", "counter", `broker_messages_rejected_total{reason="parse_or_handler"} 0`},
		{"broker_messages_dropped_by_grant_total", "counter", `broker_messages_dropped_by_grant_total{cap="broadcast"} 0`},
		{"broker_queue_depth", "gauge", "broker_queue_depth"},
		{"broker_ttl_sweeps_total", "counter", ""},
		{"broker_db_healthy", "gauge", "broker_db_healthy 1"},
		{"broker_queue_oldest_age_seconds", "gauge", "broker_queue_oldest_age_seconds"},
	}
	for _, w := range want {
		if !strings.Contains(text, "# TYPE "+w.name+" "+w.typ+"\n") {
			t.Errorf("missing TYPE line for %s %s", w.name, w.typ)
		}
		if w.sample != "" && !strings.Contains(text, w.sample) {
			t.Errorf("missing sample %q", w.sample)
		}
	}
	for _, reason := range []string{"bad_session_pubkey", "capacity", "timestamp_skew", "malformed", "bad_signature", "revoked",
		"unauthorized", "bad_parent_pubkey", "attestation_mismatch", "attestation_expired", "attestation_ttl_too_long",
		"attestation_bad_signature", "attestation_malformed", "session_timestamp_skew", "session_bad_signature",
		"session_malformed", "parent_member_id_mismatch"} {
		if !strings.Contains(text, `broker_connections_rejected_total{reason="`+reason+`"}`) {
			t.Errorf("rejection reason %s not exported", reason)
		}
	}
}

func TestHealthAndNotFound(t *testing.T) {
	e := newEnv(t, 1, nil)
	base := e.replicas[0].hs.URL
	get := func(path string) (int, map[string]any, http.Header) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m, resp.Header
	}
	code, h, hdr := get("/health")
	if code != 200 || h["status"] != "ok" || h["db"] != "up" || h["nats"] != "up" || h["node"] != "node-0" {
		t.Fatalf("/health %d %v", code, h)
	}
	if hdr.Get("Access-Control-Allow-Origin") != "" || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", hdr)
	}
	if code, r, _ := get("/health/ready"); code != 200 || r["status"] != "ready" {
		t.Fatalf("/health/ready %d %v", code, r)
	}
	if code, nf, _ := get("/nope"); code != 404 || nf["error"] != "not_found" {
		t.Fatalf("/nope %d %v", code, nf)
	}
	req, _ := http.NewRequest(http.MethodOptions, base+"/anything", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("OPTIONS %d", resp.StatusCode)
	}
}

// A socket that stops answering pings is terminated after PongWait and its
// presence enters the grace lease (B.1 keepalive).
func TestStalePongTerminates(t *testing.T) {
	e := newEnv(t, 1, func(c *broker.Config) {
		c.PingPeriod = 100 * time.Millisecond
		c.PongWait = 400 * time.Millisecond
	})
	mesh := e.newMesh("Stale")
	alice := e.enroll(mesh, "alice")
	rc := e.raw(0)
	rc.send(helloFrame(alice, time.Now()))
	ack := rc.expectFrame("hello_ack")
	// Stop reading: gorilla only answers pings while reading, so no pongs.
	time.Sleep(1200 * time.Millisecond)
	waitFor(t, 5*time.Second, "presence lease", func() bool {
		peers, err := e.st.ListPeers(t.Context(), mesh.ID)
		if err != nil || len(peers) != 1 {
			return false
		}
		return peers[0].ID == ack["presenceId"] && peers[0].LeaseUntil != nil
	})
	if err := e.replicas[0].srv.Hub().ConsistencyCheck(); err != nil {
		t.Fatal(err)
	}
	if n, _ := e.replicas[0].srv.Hub().Counts(); n != 0 {
		t.Fatalf("%d sockets still registered", n)
	}
}

// TestWSHandlerReturnsAfterUpgrade: the /ws handler returns as soon as the
// socket is up, while the socket keeps working — a handler that blocked for
// the socket's life kept net/http's per-connection read and write buffers
// (about 10 KB) with every idle socket (issue 10, docs/benchmarks.md "Idle
// memory per connection (session 4)").
func TestWSHandlerReturnsAfterUpgrade(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Handoff")
	alice := e.enroll(mesh, "alice")
	mux := http.NewServeMux()
	e.replicas[0].srv.Register(mux)
	returned := make(chan struct{}, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r)
		if r.URL.Path == "/ws" {
			returned <- struct{}{}
		}
	}))
	defer hs.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("the /ws handler still runs while its socket is open")
	}
	rc := &rawConn{t: t, ws: ws}
	rc.send(helloFrame(alice, time.Now()))
	rc.expectFrame("hello_ack")
	rc.send(map[string]any{"type": "list_peers", "_reqId": "after"})
	if f := rc.expectFrame("peers_list"); f["_reqId"] != "after" {
		t.Fatalf("list_peers after the handler returned: %v", f)
	}
}
