package collab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/collab"
	"github.com/meshd/meshd/fanout"
)

func TestMemory(t *testing.T) {
	f := newFixture(t, collab.Config{})
	r := f.one(f.bob, "remember", `"_reqId":"m1","content":"We deployed the broker to staging","tags":["infra","kubernetes"]`, "memory_stored", "")
	id, _ := r["id"].(string)
	if id == "" || r["memoryId"] != id {
		t.Fatalf("memory_stored needs id and memoryId: %v", r)
	}
	f.one(f.bob, "remember", `"content":"lunch is at noon"`, "memory_stored", "")

	recall := func(p collab.Peer, q string) []any {
		rs := f.do(p, "recall", `"_reqId":"q","query":`+jsonStr(q))
		if len(rs) != 2 || rs[0]["type"] != "memory_results" || rs[1]["type"] != "memory_recall_result" {
			t.Fatalf("recall replies: %v", rs)
		}
		a, b := list(rs[0], "memories"), list(rs[1], "matches")
		if len(a) != len(b) {
			t.Fatalf("memories %v and matches %v differ", a, b)
		}
		return a
	}
	// English stemming: "deploying" finds "deployed"; tags are searchable.
	if got := recall(f.alice, "deploying brokers"); len(got) != 1 || got[0].(map[string]any)["rememberedBy"] != "bob" {
		t.Fatalf("stemmed recall: %v", got)
	}
	if got := recall(f.alice, "kubernetes"); len(got) != 1 {
		t.Fatalf("tag recall: %v", got)
	}
	for _, q := range []string{"the", "", "vault"} {
		if got := recall(f.alice, q); len(got) != 0 {
			t.Fatalf("recall %q: %v", q, got)
		}
	}
	if got := recall(f.carol, "deployed"); len(got) != 0 {
		t.Fatalf("another mesh recalls %v", got)
	}
	// Top 20, ranked.
	for i := range 25 {
		f.one(f.alice, "remember", fmt.Sprintf(`"content":"note %d about widgets"`, i), "memory_stored", "")
	}
	if got := recall(f.alice, "widgets"); len(got) != 20 {
		t.Fatalf("recall limit: %d rows", len(got))
	}

	// forget: author or admin only; others get a specific code.
	f.one(f.carol, "forget", `"memoryId":"`+id+`"`, "ack", "not_found")
	bobs := f.one(f.bob, "remember", `"content":"bob secret plan"`, "memory_stored", "")["id"].(string)
	f.one(f.bob, "forget", `"memoryId":"`+bobs+`"`, "ack", "")
	f.one(f.bob, "forget", `"memoryId":"`+bobs+`"`, "ack", "not_found")
	aliceNote := recall(f.alice, "widgets")[0].(map[string]any)["id"].(string)
	f.one(f.bob, "forget", `"memoryId":"`+aliceNote+`"`, "ack", "forbidden")
	f.one(f.alice, "forget", `"memoryId":"`+id+`"`, "ack", "") // admin forgets bob's
	if got := recall(f.alice, "deployed"); len(got) != 0 {
		t.Fatalf("forgotten memory recalled: %v", got)
	}
}

func TestTasks(t *testing.T) {
	f := newFixture(t, collab.Config{})
	a := f.one(f.alice, "create_task", `"_reqId":"t1","title":"write docs","priority":"high","tags":["docs"]`, "task_created", "")["id"].(string)
	b := f.one(f.alice, "create_task", `"title":"review PR","assignee":"bob"`, "task_created", "")["id"].(string)
	f.one(f.carol, "create_task", `"title":"other mesh"`, "task_created", "")

	tasks := list(f.one(f.bob, "list_tasks", `"_reqId":"l"`, "task_list", ""), "tasks")
	if len(tasks) != 2 || tasks[0].(map[string]any)["id"] != b {
		t.Fatalf("list_tasks newest first, own mesh only: %v", tasks)
	}
	if got := list(f.one(f.bob, "list_tasks", `"assignee":"bob"`, "task_list", ""), "tasks"); len(got) != 1 {
		t.Fatalf("assignee filter: %v", got)
	}
	// Two tasks created together differ in the 8 characters the CLI shows
	// (ids carry no timestamp); a prefix two ids share is ambiguous.
	if a[:8] == b[:8] {
		t.Fatalf("tasks %s and %s created together share the CLI's 8-character prefix", a, b)
	}
	ids := f.sharePrefix("task", "abcdef", a, b)
	a, b = ids[0], ids[1]
	f.one(f.bob, "claim_task", `"taskId":"abcdef"`, "ack", "ambiguous_task_id")
	f.one(f.bob, "claim_task", `"taskId":"abc"`, "ack", "invalid_args")
	f.one(f.carol, "claim_task", `"taskId":"`+a+`"`, "ack", "task_not_found")
	r := f.one(f.bob, "claim_task", `"_reqId":"c","taskId":"`+a+`"`, "task_list", "")
	if r["_reqId"] != "c" {
		t.Fatalf("claim reply: %v", r)
	}
	f.one(f.alice, "claim_task", `"taskId":"`+a+`"`, "ack", "task_not_claimable")
	f.one(f.bob, "complete_task", `"taskId":"`+a+`","result":"done in #12"`, "task_list", "")
	for _, x := range list(f.one(f.bob, "list_tasks", `"status":"done"`, "task_list", ""), "tasks") {
		m := x.(map[string]any)
		if m["id"] != a || m["claimedBy"] != "bob" || m["result"] != "done in #12" || m["createdBy"] != "alice" {
			t.Fatalf("done task: %v", m)
		}
	}
	info := f.one(f.alice, "mesh_info", ``, "mesh_info_result", "")
	if tk := info["tasks"].(map[string]any); tk["open"] != 1.0 || tk["done"] != 1.0 || tk["claimed"] != 0.0 {
		t.Fatalf("mesh_info tasks: %v", tk)
	}
}

// busPublisher is collab.Publisher over a real NATS bus, the shape of the
// broker's publishFrame (one subject per mesh).
type busPublisher struct{ b *fanout.Bus }

func (p busPublisher) PublishMesh(ctx context.Context, meshID string, frame any, excl string) error {
	raw, err := json.Marshal(map[string]any{"frame": frame, "exclude": excl})
	if err != nil {
		return err
	}
	return p.b.Publish(ctx, "mesh."+meshID, raw)
}

func TestContexts(t *testing.T) {
	ns, err := fanout.StartEmbedded(fanout.EmbeddedConfig{Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	bus, err := fanout.New(context.Background(), fanout.Config{URL: ns.ClientURL(), Prefix: "ctxtest", Registerer: prometheus.NewRegistry(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bus.Close() })
	f := newFixture(t, collab.Config{Publisher: busPublisher{bus}})
	got := make(chan []byte, 4)
	release, err := bus.Subscribe("mesh."+f.mesh.ID, func(b []byte) { got <- b })
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	r := f.one(f.bob, "share_context", `"_reqId":"s","summary":"refactoring 100% of dispatch","filesRead":["a.go"],"tags":["broker"]`, "context_shared", "")
	if r["id"] == "" || r["_reqId"] != "s" {
		t.Fatalf("context_shared: %v", r)
	}
	select {
	case b := <-got:
		var ev struct {
			Frame   map[string]any `json:"frame"`
			Exclude string         `json:"exclude"`
		}
		_ = json.Unmarshal(b, &ev)
		if ev.Frame["type"] != "state_change" || ev.Frame["key"] != "_context:bob" || ev.Exclude != f.bob.PresenceID {
			t.Fatalf("push: %s", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no state_change push over NATS")
	}
	// One row per member: sharing again replaces it.
	f.one(f.bob, "share_context", `"summary":"refactoring 100% of dispatch, part 2","tags":["broker"]`, "context_shared", "")
	f.one(f.alice, "share_context", `"summary":"writing docs"`, "context_shared", "")
	if got := list(f.one(f.alice, "list_contexts", ``, "context_list", ""), "contexts"); len(got) != 2 {
		t.Fatalf("list_contexts: %v", got)
	}
	// Literal match: % is not a wildcard; tags match exactly.
	for q, n := range map[string]int{"100%": 1, "1%0": 0, "DISPATCH": 1, "broker": 1, "docs": 1, "nothing": 0} {
		if got := list(f.one(f.alice, "get_context", `"query":`+jsonStr(q), "context_results", ""), "contexts"); len(got) != n {
			t.Errorf("get_context %q: %d results, want %d", q, len(got), n)
		}
	}
	if got := list(f.one(f.carol, "list_contexts", ``, "context_list", ""), "contexts"); len(got) != 0 {
		t.Fatalf("another mesh lists %v", got)
	}
	f.one(f.alice, "get_context", ``, "context_results", "invalid_args")
}

func TestSkills(t *testing.T) {
	f := newFixture(t, collab.Config{})
	f.one(f.alice, "share_skill", `"name":"review","description":"Code review","instructions":"Read the diff.","tags":["quality"],"manifest":{"when_to_use":"PRs"}`, "skill_ack", "")
	f.one(f.bob, "share_skill", `"name":"deploy","description":"Ship to prod","instructions":"Run make."`, "skill_ack", "")
	r := f.one(f.bob, "get_skill", `"_reqId":"sg-1","name":"review"`, "skill_data", "")
	sk := r["skill"].(map[string]any)
	if sk["instructions"] != "Read the diff." || sk["author"] != "alice" || sk["manifest"].(map[string]any)["when_to_use"] != "PRs" {
		t.Fatalf("skill_data: %v", r)
	}
	if r := f.one(f.carol, "get_skill", `"name":"review"`, "skill_data", ""); r["skill"] != nil {
		t.Fatalf("another mesh reads the skill: %v", r)
	}
	for q, n := range map[string]int{"": 2, "QUALITY": 1, "prod": 1, "dep": 1, "_": 0} {
		if got := list(f.one(f.bob, "list_skills", `"query":`+jsonStr(q), "skill_list", ""), "skills"); len(got) != n {
			t.Errorf("list_skills %q: %d, want %d", q, len(got), n)
		}
	}
	// Re-sharing overwrites and moves authorship.
	f.one(f.bob, "share_skill", `"name":"review","description":"Code review v2","instructions":"Read it twice."`, "skill_ack", "")
	if sk := f.one(f.alice, "get_skill", `"name":"review"`, "skill_data", "")["skill"].(map[string]any); sk["author"] != "bob" || sk["manifest"] != nil {
		t.Fatalf("overwritten skill: %v", sk)
	}
	if r := f.one(f.carol, "remove_skill", `"name":"review"`, "skill_ack", ""); r["action"] != "not_found" {
		t.Fatalf("another mesh removed: %v", r)
	}
	if r := f.one(f.alice, "remove_skill", `"name":"review"`, "skill_ack", ""); r["action"] != "removed" {
		t.Fatalf("remove: %v", r)
	}
	f.one(f.alice, "share_skill", `"name":"x","description":"d","instructions":"i","manifest":[1]`, "error", "invalid_args")
}

func TestMeshInfo(t *testing.T) {
	f := newFixture(t, collab.Config{})
	for i, p := range []collab.Peer{f.alice, f.bob} {
		_, err := f.st.Attach(f.ctx, meshd.AttachRequest{MaxPerMesh: 10, Presence: meshd.Presence{
			MeshID: p.MeshID, MemberID: p.MemberID, MemberPubkey: p.MemberPubkey, SessionID: fmt.Sprint("s", i),
			PID: 100 + i, CWD: "/w", Groups: []meshd.Group{{Name: "ops"}, {Name: fmt.Sprint("team", i)}},
			Role: meshd.RoleSession, NodeID: "n1", SocketID: fmt.Sprint("sock", i)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.st.SetState(f.ctx, f.mesh.ID, "build", json.RawMessage(`"green"`), "", "alice"); err != nil {
		t.Fatal(err)
	}
	f.one(f.alice, "remember", `"content":"x marks the spot"`, "memory_stored", "")
	p := f.alice
	p.Groups = []meshd.Group{{Name: "ops", Role: "lead"}}
	r := f.one(p, "mesh_info", `"_reqId":"i"`, "mesh_info_result", "")
	want := map[string]any{"mesh": f.mesh.ID, "peers": 2.0, "memoryCount": 1.0, "fileCount": 0.0, "yourName": "alice"}
	for k, v := range want {
		if r[k] != v {
			t.Errorf("mesh_info %s = %v, want %v", k, r[k], v)
		}
	}
	if g := fmt.Sprint(r["groups"]); g != "[@ops @team0 @team1]" {
		t.Errorf("groups %s", g)
	}
	if fmt.Sprint(r["stateKeys"]) != "[build]" || fmt.Sprint(r["yourGroups"]) != "[map[name:ops role:lead]]" {
		t.Errorf("mesh_info: %v", r)
	}
	if r := f.one(f.carol, "mesh_info", ``, "mesh_info_result", ""); r["peers"] != 0.0 || r["memoryCount"] != 0.0 {
		t.Errorf("another mesh's counts leak: %v", r)
	}
}
