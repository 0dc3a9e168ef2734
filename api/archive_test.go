package api_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// helloWS opens a raw socket on replica i and completes a member-key hello.
func helloWS(t *testing.T, e *env, i int, id identity, at time.Time) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(e.replicas[i].wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	ts := float64(at.UnixMilli())
	if err := ws.WriteJSON(map[string]any{
		"type": "hello", "meshId": id.mesh.ID, "memberId": id.member.ID, "pubkey": id.key.Pubkey,
		"sessionId": "s-" + id.member.DisplayName, "pid": 7, "cwd": "/tmp", "timestamp": ts,
		"signature": wire.Sign(id.key.Secret, wire.HelloCanonical(id.mesh.ID, id.member.ID, id.key.Pubkey, ts)),
	}); err != nil {
		t.Fatal(err)
	}
	return ws
}

// readUntilClose reads frames until the socket closes; it returns the error
// codes seen and the close frame.
func readUntilClose(t *testing.T, ws *websocket.Conn) ([]string, *websocket.CloseError) {
	t.Helper()
	var codes []string
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m map[string]any
		err := ws.ReadJSON(&m)
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return codes, ce
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if m["type"] == "error" {
			codes = append(codes, m["code"].(string))
		}
	}
}

func expectAck(t *testing.T, ws *websocket.Conn) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("waiting for hello_ack: %v", err)
		}
		if m["type"] == "hello_ack" {
			return
		}
	}
}

// TestMeshArchiveClosesSocketsEverywhere is issue 12 item 4: DELETE
// /cli/mesh/:slug closes every live socket of the mesh on both replicas with
// an error mesh_archived and close 4003 mesh_archived, ends their presences
// without grace leases, and refuses new hellos.
func TestMeshArchiveClosesSocketsEverywhere(t *testing.T) {
	e := newEnv(t, 2, nil)
	tok := e.cliToken("owner")
	cm := e.createMeshHTTP(tok, "Sunset")
	mesh := meshd.Mesh{ID: cm.id, Slug: cm.slug, Name: "Sunset"}
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	other := e.enroll(e.newMesh("Other"), "carol")
	a := helloWS(t, e, 0, alice, time.Now())
	b := helloWS(t, e, 1, bob, time.Now())
	c := helloWS(t, e, 1, other, time.Now())
	for _, ws := range []*websocket.Conn{a, b, c} {
		expectAck(t, ws)
	}

	cliDo(t, "DELETE", e.cliURL("/cli/mesh/"+cm.slug), tok, nil).expect(t, 200, "")
	for i, ws := range []*websocket.Conn{a, b} {
		codes, ce := readUntilClose(t, ws)
		if ce.Code != 4003 || ce.Text != "mesh_archived" {
			t.Fatalf("socket %d closed %d %q, want 4003 mesh_archived", i, ce.Code, ce.Text)
		}
		if len(codes) != 1 || codes[0] != "mesh_archived" {
			t.Fatalf("socket %d error codes %v, want [mesh_archived]", i, codes)
		}
		if got := counter(t, e.replicas[i], "broker_connections_closed_total", "reason", "mesh_archived"); got != 1 {
			t.Fatalf("replica %d mesh_archived closes = %v, want 1", i, got)
		}
	}
	if n := e.cliInt("SELECT count(*) FROM mesh.presence WHERE mesh_id = $1 AND disconnected_at IS NULL", cm.id); n != 0 {
		t.Fatalf("%d presences of the archived mesh still live", n)
	}
	// The other mesh's socket is untouched: it still answers.
	if err := c.WriteJSON(map[string]any{"type": "list_peers"}); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m map[string]any
	if err := c.ReadJSON(&m); err != nil || m["type"] != "peers_list" {
		t.Fatalf("other mesh socket: %v %v", m, err)
	}
	// New hellos to the archived mesh are refused.
	ws := helloWS(t, e, 1, alice, time.Now().Add(time.Millisecond))
	codes, ce := readUntilClose(t, ws)
	if ce.Code != 1008 || len(codes) != 1 || codes[0] != "unauthorized" {
		t.Fatalf("hello after archive: %v %d %q", codes, ce.Code, ce.Text)
	}
}

// TestGrantsAndNULBodies is issue 12 item 8 on the HTTP side: grants take
// only 64-hex keys, known capabilities and a bounded number of entries, and
// a body with a NUL string is 400 invalid_string (it used to be a 500).
func TestGrantsAndNULBodies(t *testing.T) {
	e := newEnv(t, 1, nil)
	tok := e.cliToken("owner")
	cm := e.createMeshHTTP(tok, "Bounded")
	url := e.cliURL("/cli/mesh/" + cm.slug + "/grants")
	key := strings.Repeat("a", 64)
	many := map[string]any{}
	for i := 0; i < 257; i++ {
		many[fmt.Sprintf("%064x", i)] = []string{"dm"}
	}
	for name, grants := range map[string]map[string]any{
		"short key":     {"abc": []string{"dm"}},
		"uppercase key": {strings.Repeat("A", 64): []string{"dm"}},
		"unknown cap":   {key: []string{"root"}},
		"too many caps": {key: []string{"dm", "dm", "dm", "dm", "dm", "dm", "dm"}},
		"too many keys": many,
	} {
		r := cliDo(t, "POST", url, tok, map[string]any{"grants": grants})
		if r.status != 400 || r.body["error"] != "invalid_grants" {
			t.Fatalf("%s: %d %s", name, r.status, r.raw)
		}
	}
	cliDo(t, "POST", url, tok, map[string]any{"grants": map[string]any{key: []string{"dm", "state-write"}}}).expect(t, 200, "")
	r := cliDo(t, "POST", e.cliURL("/cli/mesh/create"), tok, map[string]any{"name": "nul\u0000mesh", "pubkey": key})
	if r.status != 400 || r.body["error"] != "invalid_string" {
		t.Fatalf("NUL body: %d %s", r.status, r.raw)
	}
}
