package broker_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/collab"
	"github.com/meshd/meshd/internal/seal"
	"github.com/meshd/meshd/store"
)

// authed opens a raw socket on replica i and completes id's member hello.
func (e *env) authed(i int, id identity) *rawConn {
	e.t.Helper()
	r := e.raw(i)
	r.send(helloFrame(id, time.Now()))
	r.expectFrame("hello_ack")
	return r
}

// clientTimeout is how long the claudemesh client waits for a reply before
// it resolves with its fallback (docs/protocol.md Part C): a reply later
// than that is lost to the user, so it is the one bound that matters here.
// How fast verbs answer is measured by benchmarks, not by this test.
const clientTimeout = 5 * time.Second

// replies reads the n frames that answer a request, skipping pushes (system
// events of other sockets); each must arrive before the client gives up.
func (r *rawConn) replies(n int) []map[string]any {
	r.t.Helper()
	var out []map[string]any
	for len(out) < n {
		m, ce, err := r.next(clientTimeout)
		if err != nil || ce != nil {
			r.t.Fatalf("reply %d of %d: err %v close %v", len(out)+1, n, err, ce)
		}
		if m["type"] != "push" && m["type"] != "state_change" {
			out = append(out, m)
		}
	}
	return out
}

// collabReplies is what each of the 66 types answers over a real socket:
// the reply types in order. Fields are given for the verbs meshd
// implements, so they succeed; the rest get their typed fallback.
var collabReplies = map[string]struct {
	fields string
	want   string // reply types, space separated
}{
	"topic_create": {`"name":"ops"`, "topic_created"}, "topic_list": {``, "topic_list_response"},
	"topic_join": {`"topic":"ops"`, "ack"}, "topic_leave": {`"topic":"ops"`, "ack"},
	"topic_members": {`"topic":"ops"`, "topic_members_response"}, "topic_history": {`"topic":"ops"`, "topic_history_response"},
	"topic_mark_read": {`"topic":"ops"`, "ack"},
	"remember":        {`"content":"the staging db is on port 5433","tags":["db"]`, "memory_stored"},
	"recall":          {`"query":"staging"`, "memory_results memory_recall_result"},
	"forget":          {`"memoryId":"unknown-memory"`, "ack"},
	"create_task":     {`"title":"rotate keys"`, "task_created"}, "claim_task": {`"taskId":"zzzzzz"`, "ack"},
	"complete_task": {`"taskId":"zzzzzz"`, "ack"}, "list_tasks": {``, "task_list"}, "mesh_info": {``, "mesh_info_result"},
	"share_context": {`"summary":"wiring collab"`, "context_shared"}, "get_context": {`"query":"collab"`, "context_results"},
	"list_contexts": {``, "context_list"},
	"share_skill":   {`"name":"review","description":"code review","instructions":"read the diff"`, "skill_ack"},
	"get_skill":     {`"name":"review"`, "skill_data"}, "list_skills": {``, "skill_list"}, "remove_skill": {`"name":"review"`, "skill_ack"},
	"apikey_create": {`"label":"cli-members-1","capabilities":["read"]`, "apikey_created"},
	"apikey_list":   {``, "apikey_list_response"}, "apikey_revoke": {`"id":"ffffffffff"`, "apikey_revoke_response"},
	"vault_set":  {`"key":"DB_URL","ciphertext":"Y2lwaGVy","nonce":"bm9uY2U=","sealed_key":"a2V5","entry_type":"env"`, "vault_ack"},
	"vault_list": {``, "vault_list_result"}, "vault_get": {`"keys":["DB_URL"]`, "vault_get_result"},
	"vault_delete":   {`"key":"DB_URL"`, "vault_ack"},
	"create_webhook": {`"name":"ci"`, "webhook_ack"}, "list_webhooks": {``, "webhook_list"},
	"delete_webhook": {`"name":"ci"`, "webhook_ack"},
}

// fallbackErrors and fallbackAcks are the unsupported verbs whose typed
// fallback is an error frame or an inert ack (docs/protocol.md C.1).
var (
	fallbackErrors = "grant_file_access mcp_register unwatch"
	fallbackAcks   = "delete_file vector_delete mesh_execute mcp_unregister mcp_call_response peer_file_response peer_dir_response"
)

// TestCollabEveryTypeOverSocket sends each of the 66 collaboration types
// with a _reqId over a real socket and checks that the reply (or replies)
// come at once with the type the client waits for, echo _reqId, never put
// the request id in "id", carry the new row's id where the client reads it,
// and that none is unknown_message_type.
// The replica's collab store has an encryption key, so vault and webhooks
// answer for real.
func TestCollabEveryTypeOverSocket(t *testing.T) {
	e := newEnv(t, 0, nil)
	keyed := e.keyedStore()
	e.replicas = append(e.replicas, e.startReplica("node-0", func(c *broker.Config) { c.CollabStore = keyed }))
	mesh := e.newMesh("Collab")
	alice := e.enroll(mesh, "alice")
	r := e.authed(0, alice)
	types := collab.Types()
	if len(types) != 66 {
		t.Fatalf("collab.Types() has %d types, want 66", len(types))
	}
	for _, typ := range types {
		c := collabReplies[typ]
		want := strings.Fields(c.want)
		switch {
		case len(want) > 0:
		case strings.Contains(" "+fallbackErrors+" ", " "+typ+" "):
			want = []string{"error"}
		case strings.Contains(" "+fallbackAcks+" ", " "+typ+" "):
			want = []string{"ack"}
		default:
			want = []string{""} // its own typed reply: anything but error/ack
		}
		frame := `{"type":"` + typ + `","_reqId":"rq-` + typ + `"`
		if c.fields != "" {
			frame += "," + c.fields
		}
		r.send(frame + "}")
		got := r.replies(len(want))
		for i, m := range got {
			switch {
			case want[i] == "" && (m["type"] == "error" || m["type"] == "ack"):
				t.Errorf("%s: reply %v, want its typed fallback", typ, m)
			case want[i] != "" && m["type"] != want[i]:
				t.Errorf("%s: reply %d type %v, want %s (%v)", typ, i, m["type"], want[i], m)
			}
			if m["_reqId"] != "rq-"+typ {
				t.Errorf("%s: _reqId %v", typ, m["_reqId"])
			}
			if m["id"] == "rq-"+typ || (m["type"] == "ack" && m["id"] != "") {
				t.Errorf("%s: id %v (the request id must not be in id; acks are inert)", typ, m["id"])
			}
			if m["code"] == "unknown_message_type" || m["code"] == "internal_error" {
				t.Errorf("%s: %v", typ, m)
			}
			if c.fields != "" && m["type"] != "ack" && m["code"] != nil {
				t.Errorf("%s: implemented verb rejected: %v", typ, m)
			}
		}
		switch typ {
		case "vault_set", "vault_delete":
			if want := map[string]string{"vault_set": "stored", "vault_delete": "deleted"}[typ]; got[0]["action"] != want {
				t.Errorf("%s: %v, want action %s", typ, got[0], want)
			}
		case "vault_get": // after vault_delete in E.1's order
			if es, _ := got[0]["entries"].([]any); es == nil || len(es) != 0 {
				t.Errorf("vault_get: %v", got[0])
			}
		case "apikey_create", "create_webhook":
			if sec, _ := got[0]["secret"].(string); sec == "" {
				t.Errorf("%s: no secret in %v", typ, got[0])
			}
		case "remember", "create_task", "share_context":
			if id, _ := got[0]["id"].(string); id == "" {
				t.Errorf("%s: no row id in %v", typ, got[0])
			}
		case "recall":
			if ms, _ := got[0]["memories"].([]any); len(ms) != 1 {
				t.Errorf("recall: memories %v, want the one remembered", got[0]["memories"])
			}
		}
	}
	// A core type still goes to the core handler; an unknown one is still
	// unknown_message_type.
	r.send(`{"type":"no_such_verb","_reqId":"x"}`)
	if m := r.replies(1)[0]; m["code"] != "unknown_message_type" || m["_reqId"] != "x" {
		t.Fatalf("unknown type: %v", m)
	}
}

// TestCollabHostileFrames: a frame that is not what the verb expects gets a
// specific code in the verb's own reply type, never internal error text.
func TestCollabHostileFrames(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("Hostile")
	r := e.authed(0, e.enroll(mesh, "mallory"))
	for _, tc := range []struct{ frame, typ, code string }{
		{`{"type":"remember","_reqId":"1","content":42}`, "memory_stored", "invalid_args"},
		{`{"type":"remember","_reqId":"2","content":""}`, "memory_stored", "invalid_args"},
		{`{"type":"topic_history","_reqId":"3","topic":"nope"}`, "topic_history_response", "topic_not_found"},
		{`{"type":"topic_join","_reqId":"4","topic":"x","role":"king"}`, "ack", "invalid_args"},
		{`{"type":"topic_create","_reqId":"5","name":"` + strings.Repeat("n", 200) + `"}`, "error", "invalid_args"},
		{`{"type":"claim_task","_reqId":"6","taskId":"abc"}`, "ack", "invalid_args"},
		{`{"type":"list_tasks","_reqId":"7","status":["open"]}`, "task_list", "invalid_args"},
	} {
		r.send(tc.frame)
		m := r.replies(1)[0]
		if m["type"] != tc.typ || m["code"] != tc.code {
			t.Errorf("%s: got %v, want %s with code %s", tc.frame, m, tc.typ, tc.code)
		}
		raw, _ := json.Marshal(m)
		if strings.Contains(string(raw), "pgx") || strings.Contains(string(raw), "SQLSTATE") {
			t.Errorf("%s: internal text in %s", tc.frame, raw)
		}
	}
}

// TestCollabContextPushAcrossReplicas: share_context on replica 0 pushes
// state_change to the mesh's socket on replica 1 (collab publishes through
// the broker's fan-out), not to the sender.
func TestCollabContextPushAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("Ctx")
	alice, bob := e.enroll(mesh, "alice"), e.enroll(mesh, "bob")
	a := e.authed(0, alice)
	b := e.authed(1, bob)
	a.send(`{"type":"share_context","_reqId":"c1","summary":"reading hello.go"}`)
	if m := a.replies(1)[0]; m["type"] != "context_shared" || m["_reqId"] != "c1" {
		t.Fatalf("share_context reply %v", m)
	}
	m := b.expectFrame("state_change")
	if m["key"] != "_context:alice" || m["value"] != "reading hello.go" || m["updatedBy"] != "alice" {
		t.Fatalf("state_change %v", m)
	}
	// Bob, on the other replica, finds it.
	b.send(`{"type":"get_context","_reqId":"g","query":"HELLO"}`)
	got := b.replies(1)[0]
	if cs, _ := got["contexts"].([]any); len(cs) != 1 {
		t.Fatalf("get_context %v", got)
	}
}

// keyedStore is a second handle on the env's database that seals secrets
// (BROKER_ENCRYPTION_KEY), for the collab verbs that store them.
func (e *env) keyedStore() *store.Store {
	e.t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		e.t.Fatal(err)
	}
	st, err := store.New(context.Background(), store.Config{URL: e.dsn, Keyring: seal.New(k)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(st.Close)
	return st
}
