package api_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/seal"
	"github.com/meshd/meshd/store"
)

// newKeyedEnv is an env of n replicas whose broker (collab verbs) and
// control plane use a store that seals secrets (BROKER_ENCRYPTION_KEY).
func newKeyedEnv(t *testing.T, n int, tweak func(*api.Config)) *env {
	t.Helper()
	e := newEnv(t, 0, nil)
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	keyed, err := store.New(context.Background(), store.Config{URL: e.dsn, Keyring: seal.New(k)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keyed.Close)
	for i := 0; i < n; i++ {
		e.replicas = append(e.replicas, e.startReplica("node-"+string(rune('0'+i)), func(b *broker.Config, a *api.Config) {
			b.CollabStore, a.Store = keyed, keyed
			if tweak != nil {
				tweak(a)
			}
		}))
	}
	return e
}

// request sends one collab frame over c and returns the reply.
func request(t *testing.T, c *client.Client, frame, respType string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var f map[string]any
	if err := json.Unmarshal([]byte(frame), &f); err != nil {
		t.Fatal(err)
	}
	raw, err := c.Request(ctx, f, respType)
	if err != nil {
		t.Fatalf("%s: %v", frame, err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// httpJSON sends method url with body and header h (name, value pairs) and
// returns the status and the JSON reply.
func httpJSON(t *testing.T, method, url, body string, h ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	for i := 0; i+1 < len(h); i += 2 {
		req.Header.Set(h[i], h[i+1])
	}
	code, m, _ := doJSON(t, req)
	return code, m
}

// doJSON sends req and returns the status, the reply (the test fails on one
// that is not JSON or carries database text) and the headers.
func doJSON(t *testing.T, req *http.Request) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s %s: reply %d %q is not JSON", req.Method, req.URL, resp.StatusCode, data)
	}
	if strings.Contains(string(data), "SQLSTATE") || strings.Contains(string(data), "pgx") {
		t.Fatalf("%s %s: internal text in %s", req.Method, req.URL, data)
	}
	return resp.StatusCode, m, resp.Header
}

// TestWebhookAcrossReplicas: a webhook created over the socket on replica 0
// posts, through replica 0's inbound route, a push that reaches a member
// connected to replica 1 (and the creator); a deleted webhook's URL stops
// working at once.
func TestWebhookAcrossReplicas(t *testing.T) {
	e := newKeyedEnv(t, 2, nil)
	mesh := e.newMesh("Hooks")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.dial(0, alice, nil)
	b := e.dial(1, bob, nil)

	r := request(t, a, `{"type":"create_webhook","name":"ci","_reqId":"w1"}`, "webhook_ack")
	secret, _ := r["secret"].(string)
	url, _ := r["url"].(string)
	if len(secret) != 64 || url != "/hook/"+mesh.ID+"/"+secret {
		t.Fatalf("webhook_ack %v", r)
	}
	code, rep := httpJSON(t, http.MethodPost, e.replicas[0].hs.URL+url, `{"ref":"main","status":"green"}`,
		"Content-Type", "application/json")
	if code != http.StatusOK || rep["ok"] != true || rep["delivered"] != float64(2) {
		t.Fatalf("POST webhook: %d %v", code, rep)
	}
	for _, c := range []*client.Client{b, a} {
		m := recvPush(t, c, 5*time.Second)
		p := m.Push
		if p.Subtype != "webhook" || p.Event != "ci" || p.SenderPubkey != "webhook:ci" || p.MeshID != mesh.ID ||
			string(p.EventData) != `{"ref":"main","status":"green"}` || p.MessageID == "" {
			t.Fatalf("webhook push %+v", p)
		}
	}
	if n := counter(t, e.replicas[0], "broker_webhook_requests_total", "outcome", "delivered"); n != 1 {
		t.Fatalf("delivered counter %v", n)
	}

	// Bob did not create it and is no admin.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.Request(ctx, map[string]any{"type": "delete_webhook", "name": "ci"}, "webhook_ack"); err == nil ||
		!strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("bob's delete_webhook: %v", err)
	}
	request(t, a, `{"type":"delete_webhook","name":"ci","_reqId":"d2"}`, "webhook_ack")
	if code, rep := httpJSON(t, http.MethodPost, e.replicas[1].hs.URL+url, `{}`); code != http.StatusUnauthorized || rep["error"] != "unauthorized" {
		t.Fatalf("POST after delete: %d %v", code, rep)
	}
}

// TestWebhookHostile: every hostile inbound request gets its own status and
// JSON error, never internal text, and nothing is pushed.
func TestWebhookHostile(t *testing.T) {
	// The control plane's clock stands still, so the bucket never refills
	// however slowly the test runs.
	t0 := time.Now()
	e := newKeyedEnv(t, 1, func(a *api.Config) {
		a.WebhookRateLimitPerMin, a.MaxMessageBytes, a.Now = 4, 1024, func() time.Time { return t0 }
	})
	mesh := e.newMesh("Hostile")
	alice := e.enroll(mesh, "alice")
	a := e.dial(0, alice, nil)
	secret := request(t, a, `{"type":"create_webhook","name":"ci"}`, "webhook_ack")["secret"].(string)
	base := e.replicas[0].hs.URL + "/hook/"
	good := base + mesh.ID + "/" + secret
	for _, tc := range []struct {
		url, body string
		code      int
		err       string
	}{
		{base + mesh.ID + "/" + strings.Repeat("0", 64), `{}`, http.StatusUnauthorized, "unauthorized"},
		{base + mesh.ID + "/x", `{}`, http.StatusUnauthorized, "unauthorized"},
		{base + "no-such-mesh/" + secret, `{}`, http.StatusNotFound, "mesh_not_found"},
		{good, `{"a":"` + strings.Repeat("x", 1100) + `"}`, http.StatusRequestEntityTooLarge, "payload_too_large"},
		{good, `{"a":`, http.StatusBadRequest, "invalid JSON"},
		{good, `"just a string"`, http.StatusBadRequest, "invalid JSON body: an object or an array is required"},
	} {
		code, rep := httpJSON(t, http.MethodPost, tc.url, tc.body)
		if code != tc.code || rep["error"] != tc.err || rep["ok"] != false {
			t.Errorf("%s %.40s: %d %v, want %d %s", tc.url[len(base):], tc.body, code, rep, tc.code, tc.err)
		}
	}
	// The webhook's bucket (4 per minute) holds 2 more after the two bad
	// bodies; wrong secrets did not take from it.
	for i := 0; i < 2; i++ {
		if code, rep := httpJSON(t, http.MethodPost, good, `[1,2]`); code != http.StatusOK {
			t.Fatalf("POST %d: %d %v", i, code, rep)
		}
	}
	if code, rep := httpJSON(t, http.MethodPost, good, `[3]`); code != http.StatusTooManyRequests || rep["error"] != "rate_limited" {
		t.Fatalf("POST past the bucket: %d %v", code, rep)
	}
	for i := 0; i < 2; i++ {
		if m := recvPush(t, a, 5*time.Second); string(m.Push.EventData) != `[1,2]` {
			t.Fatalf("push %d: %+v", i, m.Push)
		}
	}
	select {
	case m := <-a.Pushes():
		t.Fatalf("a rejected request was pushed: %+v", m.Push)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestAPIMembers: a key minted over the socket (apikey_create) reads its
// own mesh's roster at GET /api/v1/members; no key, a wrong one, another
// mesh's and a revoked one are 401, a key without read is 403.
func TestAPIMembers(t *testing.T) {
	e := newEnv(t, 0, nil)
	e.replicas = append(e.replicas, e.startReplica("node-0", func(b *broker.Config, _ *api.Config) { b.CollabStore = e.st }))
	mesh, other := e.newMesh("Roster"), e.newMesh("Other")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	carol := e.enroll(other, "carol")
	b := e.dial(0, bob, nil)
	c := e.dial(0, carol, nil)
	url := e.replicas[0].hs.URL + "/api/v1/members"

	key := request(t, b, `{"type":"apikey_create","label":"cli-members-1","capabilities":["read"]}`, "apikey_created")
	secret := key["secret"].(string)
	code, rep := httpJSON(t, http.MethodGet, url, "", "Authorization", "Bearer "+secret)
	if code != http.StatusOK {
		t.Fatalf("GET members: %d %v", code, rep)
	}
	ms, _ := rep["members"].([]any)
	if len(ms) != 2 {
		t.Fatalf("members %v", rep)
	}
	got := map[string]map[string]any{}
	for _, m := range ms {
		row := m.(map[string]any)
		got[row["displayName"].(string)] = row
	}
	if got["bob"]["online"] != true || got["alice"]["online"] != false || got["alice"]["memberId"] != alice.member.ID ||
		got["bob"]["pubkey"] != bob.member.Pubkey || got["bob"]["role"] != "member" || got["bob"]["status"] == nil ||
		got["alice"]["joinedAt"] == nil {
		t.Fatalf("members %v", got)
	}

	noRead := request(t, b, `{"type":"apikey_create","label":"sender","capabilities":["send"]}`, "apikey_created")["secret"].(string)
	carolKey := request(t, c, `{"type":"apikey_create","label":"c","capabilities":["read"]}`, "apikey_created")["secret"].(string)
	if code, rep := httpJSON(t, http.MethodGet, url, "", "Authorization", "Bearer "+carolKey); code != http.StatusOK ||
		len(rep["members"].([]any)) != 1 {
		t.Fatalf("carol's key: %d %v", code, rep)
	}
	for _, tc := range []struct {
		auth string
		code int
		err  string
	}{
		{"", http.StatusUnauthorized, "unauthorized"},
		{"Bearer", http.StatusUnauthorized, "unauthorized"},
		{"Bearer cm_" + strings.Repeat("A", 43), http.StatusUnauthorized, "unauthorized"},
		{"Basic " + secret, http.StatusUnauthorized, "unauthorized"},
		{"Bearer " + noRead, http.StatusForbidden, "forbidden"},
	} {
		if code, rep := httpJSON(t, http.MethodGet, url, "", "Authorization", tc.auth); code != tc.code || rep["error"] != tc.err {
			t.Errorf("%q: %d %v, want %d %s", tc.auth, code, rep, tc.code, tc.err)
		}
	}
	// Revocation is immediate.
	if r := request(t, b, `{"type":"apikey_revoke","id":"`+key["id"].(string)+`"}`, "apikey_revoke_response"); r["status"] != "revoked" {
		t.Fatalf("revoke: %v", r)
	}
	if code, rep := httpJSON(t, http.MethodGet, url, "", "Authorization", "Bearer "+secret); code != http.StatusUnauthorized {
		t.Fatalf("revoked key: %d %v", code, rep)
	}
}
