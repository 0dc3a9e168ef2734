package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/fanout"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/wire"
)

// claudeProtocol is the MCP version Claude Code initializes with: the
// legacy initialize handshake, after which the server sends its welcome.
const claudeProtocol = "2025-06-18"

// notification is a notifications/claude/channel as the client saw it,
// meta decoded loosely to prove every value is a string.
type notification struct {
	Content string         `json:"content"`
	Meta    map[string]any `json:"meta"`
}

// tapTransport hands the SDK client every message except channel pushes,
// which the SDK has no handler for; those go to ch.
type tapTransport struct {
	inner mcp.Transport
	ch    chan notification
}

func (t *tapTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	c, err := t.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &tapConn{Connection: c, ch: t.ch}, nil
}

type tapConn struct {
	mcp.Connection
	ch chan notification
}

func (c *tapConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	for {
		m, err := c.Connection.Read(ctx)
		if req, ok := m.(*jsonrpc.Request); ok && err == nil && req.Method == channelMethod {
			var n notification
			if err := json.Unmarshal(req.Params, &n); err != nil {
				n.Content = "undecodable: " + string(req.Params)
			}
			c.ch <- n
			continue
		}
		return m, err
	}
}

// mcpPeer is one `meshctl mcp` process driven by the SDK's client.
type mcpPeer struct {
	t      *testing.T
	cs     *mcp.ClientSession
	cmd    *exec.Cmd
	ch     chan notification
	stderr *lockedBuffer
	// promptsChanged gets a value per notifications/prompts/list_changed.
	promptsChanged chan struct{}
}

// startMCP runs `meshctl mcp` for p in dir (its cwd, which hooks match)
// and initializes it as Claude Code would.
func startMCP(t *testing.T, p *person, dir string, args ...string) *mcpPeer {
	t.Helper()
	cmd := p.command(append([]string{"mcp"}, args...)...)
	cmd.Dir = dir
	m := &mcpPeer{t: t, cmd: cmd, ch: make(chan notification, 100), stderr: &lockedBuffer{}, promptsChanged: make(chan struct{}, 100)}
	cmd.Stderr = m.stderr
	cl := mcp.NewClient(&mcp.Implementation{Name: "e2e-" + p.name, Version: "1"}, &mcp.ClientOptions{
		PromptListChangedHandler: func(context.Context, *mcp.PromptListChangedRequest) { m.promptsChanged <- struct{}{} },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := cl.Connect(ctx, &tapTransport{inner: &mcp.CommandTransport{Command: cmd}, ch: m.ch},
		&mcp.ClientSessionOptions{ProtocolVersion: claudeProtocol})
	if err != nil {
		t.Fatalf("%s: mcp connect: %v\n%s", p.name, err, m.stderr.String())
	}
	m.cs = cs
	t.Cleanup(func() { _ = cs.Close() })
	return m
}

// call runs a tool and returns its result.
func (m *mcpPeer) call(name string, args map[string]any) *mcp.CallToolResult {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := m.cs.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		m.t.Fatalf("call %s: protocol error %v\n%s", name, err, m.stderr.String())
	}
	return res
}

// ok runs a tool that must succeed and decodes its structured output.
func (m *mcpPeer) ok(name string, args map[string]any, out any) {
	m.t.Helper()
	res := m.call(name, args)
	if res.IsError {
		m.t.Fatalf("%s(%v) is a tool error: %s", name, args, resultText(res))
	}
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, out); err != nil {
		m.t.Fatalf("%s: output %s: %v", name, b, err)
	}
}

func resultText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// expect waits for a channel notification matching ok.
func (m *mcpPeer) expect(what string, ok func(notification) bool) notification {
	m.t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case n := <-m.ch:
			if ok(n) {
				return n
			}
		case <-timeout:
			m.t.Fatalf("no %s within 15 s\n%s", what, m.stderr.String())
		}
	}
}

// quiet fails if a notification matching bad arrives within d.
func (m *mcpPeer) quiet(d time.Duration, what string, bad func(notification) bool) {
	m.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case n := <-m.ch:
			if bad(n) {
				m.t.Fatalf("unexpected %s: %+v", what, n)
			}
		case <-timeout:
			return
		}
	}
}

func isMessage(id string) func(notification) bool {
	return func(n notification) bool { return n.Meta["message_id"] == id }
}

// The MCP end-to-end test: two `meshctl mcp` processes, each
// driven by the MCP SDK's own client over stdio, against two meshd
// replicas on one real PostgreSQL and one NATS.
// mcpStack is two meshd replicas on one PostgreSQL and one NATS, and the
// mesh mcp-team: owner created it on b1, alice joined on b1, bob on b2.
type mcpStack struct {
	b1, b2            *broker
	owner, alice, bob *person
}

func newMCPStack(t *testing.T) mcpStack {
	meshdPath, _ := binaries(t)
	dsn := testpg.NewDatabase(t)
	ns, err := fanout.StartEmbedded(fanout.EmbeddedConfig{Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	st := mcpStack{
		b1:    startBroker(t, dsn, freePort(t), "NATS_URL="+ns.ClientURL(), "MESHD_NODE_ID=mcp-a"),
		b2:    startBroker(t, dsn, freePort(t), "NATS_URL="+ns.ClientURL(), "MESHD_NODE_ID=mcp-b"),
		owner: newPerson(t, "owner"), alice: newPerson(t, "alice"), bob: newPerson(t, "bob"),
	}
	tokCmd := exec.Command(meshdPath, "token", "create", "--user", "owner")
	tokCmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "LOG_LEVEL=warn")
	tokOut, err := tokCmd.Output()
	if err != nil {
		t.Fatalf("meshd token create: %v", err)
	}
	st.owner.must("login", "--token", strings.TrimSpace(string(tokOut)), "--broker", st.b1.ws())
	st.owner.must("mesh", "create", "MCP Team")
	var inv inviteResult
	st.owner.mustJSON(&inv, "invite", "mcp-team", "--max-uses", "2", "--json")
	st.alice.must("join", inv.URL, "--name", "alice")
	st.bob.must("join", inv.URL, "--name", "bob", "--broker", st.b2.ws())
	return st
}

func TestMCPEndToEnd(t *testing.T) {
	stack := newMCPStack(t)
	b1, alice, bob := stack.b1, stack.alice, stack.bob
	aliceDir, bobDir := t.TempDir(), t.TempDir()

	a := startMCP(t, alice, aliceDir)
	a.expect("alice's welcome", func(n notification) bool { return n.Meta["event"] == "welcome" })
	b := startMCP(t, bob, bobDir)
	welcome := b.expect("bob's welcome", func(n notification) bool { return n.Meta["event"] == "welcome" })
	if welcome.Meta["peers_online"] != "1" || !strings.Contains(welcome.Content, "Connected to mesh mcp-team as bob") {
		t.Fatalf("welcome %+v", welcome)
	}
	a.expect("bob joined", func(n notification) bool { return n.Meta["event"] == "peer_joined" && n.Meta["from_name"] == "bob" })

	// Tools are listed with their schemas.
	tools, err := a.cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"check_messages", "get_state", "list_peers", "message_status", "send_message", "set_state", "set_status", "set_summary"}
	var got []string
	for _, tl := range tools.Tools {
		got = append(got, tl.Name)
		schema, _ := json.Marshal(tl.InputSchema)
		if tl.Description == "" || !strings.Contains(string(schema), `"type":"object"`) {
			t.Errorf("tool %s: description %q schema %s", tl.Name, tl.Description, schema)
		}
		if tl.Name == "send_message" && !strings.Contains(string(schema), `"required":["to","message"]`) {
			t.Errorf("send_message schema %s", schema)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("tools %v, want %v", got, want)
	}

	// list_peers shows both sessions.
	var peers peersOut
	a.ok("list_peers", nil, &peers)
	names := map[string]peerOut{}
	for _, p := range peers.Peers {
		names[p.Name] = p
	}
	if len(peers.Peers) != 2 || names["bob"].Kind != "session" || !names["alice"].You || names["bob"].CWD != bobDir {
		t.Fatalf("list_peers %+v", peers)
	}

	// A's DM reaches B as a channel push with string-only meta.
	var sent sendOut
	a.ok("send_message", map[string]any{"to": "bob", "message": "build is green", "priority": "now"}, &sent)
	if !sent.Queued || !sent.Encrypted {
		t.Fatalf("send %+v", sent)
	}
	n := b.expect("the DM push", isMessage(sent.MessageID))
	if n.Content != "[URGENT] alice: build is green" {
		t.Fatalf("content %q", n.Content)
	}
	for k, v := range n.Meta {
		if _, ok := v.(string); !ok {
			t.Fatalf("meta %s is %T, not a string", k, v)
		}
	}
	aliceKey := alice.config().Meshes[0].Pubkey
	if n.Meta["from_name"] != "alice" || n.Meta["from_pubkey"] != aliceKey || n.Meta["from_session_pubkey"] != names["alice"].Pubkey ||
		n.Meta["mesh_slug"] != "mcp-team" || n.Meta["priority"] != "now" {
		t.Fatalf("meta %+v", n.Meta)
	}
	// A DM by pubkey prefix answering alice's DM carries reply_to_id; so
	// does a broadcast reply; a pushed message is not repeated by
	// check_messages.
	var dm sendOut
	b.ok("send_message", map[string]any{"to": names["alice"].Pubkey[:10], "message": "thanks", "reply_to": sent.MessageID}, &dm)
	if dn := a.expect("the DM by prefix", isMessage(dm.MessageID)); dn.Content != "bob: thanks" || dn.Meta["reply_to_id"] != sent.MessageID {
		t.Fatalf("DM by prefix %+v", dn)
	}
	var reply sendOut
	b.ok("send_message", map[string]any{"to": "*", "message": "on it", "reply_to": sent.MessageID, "priority": "low"}, &reply)
	rn := a.expect("the reply", isMessage(reply.MessageID))
	if rn.Content != "[low] bob: on it" || rn.Meta["reply_to_id"] != sent.MessageID {
		t.Fatalf("reply %+v", rn)
	}
	var check checkOut
	b.ok("check_messages", nil, &check)
	if len(check.Messages) != 0 {
		t.Fatalf("check_messages repeats pushed messages: %+v", check)
	}

	// Bad arguments and broker refusals are tool errors with the reason.
	for _, bad := range []struct {
		tool string
		args map[string]any
		want string
	}{
		{"send_message", map[string]any{"message": "no target"}, "to"},
		{"send_message", map[string]any{"to": "bob", "message": "x", "priority": "urgent"}, "priority must be now, next or low"},
		{"send_message", map[string]any{"to": "nobody", "message": "x"}, `no online peer is named or keyed "nobody"`},
		{"set_status", map[string]any{"status": "sleepy"}, "status must be idle, working or dnd"},
		{"message_status", map[string]any{"message_id": "zzzzzzzzzzzz"}, "not"},
	} {
		res := a.call(bad.tool, bad.args)
		if !res.IsError || !strings.Contains(resultText(res), bad.want) {
			t.Errorf("%s(%v): isError %v %q, want %q", bad.tool, bad.args, res.IsError, resultText(res), bad.want)
		}
	}

	// State and summary round-trip.
	var st stateOut
	a.ok("set_state", map[string]any{"key": "release", "value": map[string]any{"frozen": true}}, &st)
	b.ok("get_state", map[string]any{"key": "release"}, &st)
	if v, _ := json.Marshal(st.Value); string(v) != `{"frozen":true}` || st.UpdatedBy != "alice" {
		t.Fatalf("get_state %+v", st)
	}
	var okv okOut
	b.ok("set_summary", map[string]any{"summary": "fixing flaky tests"}, &okv)

	// `meshctl hook working` (Claude Code's UserPromptSubmit hook; its
	// parent is this test, as the MCP server's is) turns B working: A's
	// `next` message waits; an idle hook POST releases it.
	hk := bob.command("hook", "working")
	hk.Stdin = strings.NewReader(`{"session_id":"claude-1","cwd":"` + bobDir + `","hook_event_name":"UserPromptSubmit"}`)
	if out, err := hk.CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("meshctl hook working: %v %s", err, out)
	}
	a.ok("list_peers", nil, &peers)
	for _, p := range peers.Peers {
		if p.Name == "bob" && (p.Status != "working" || p.Summary != "fixing flaky tests") {
			t.Fatalf("bob after the hook: %+v", p)
		}
	}
	var held sendOut
	a.ok("send_message", map[string]any{"to": "bob", "message": "when you have a moment"}, &held)
	b.quiet(1500*time.Millisecond, "a next message to a working peer", isMessage(held.MessageID))
	hook(t, b1, bobDir, "idle") // through the other replica
	hn := b.expect("the released message", isMessage(held.MessageID))
	if hn.Content != "alice: when you have a moment" || hn.Meta["priority"] != "next" {
		t.Fatalf("released %+v", hn)
	}
	// Surfaced means client_acked: message_status turns delivered.
	var ms map[string]any
	waitFor(t, "the released message to be delivered", func() bool {
		a.ok("message_status", map[string]any{"message_id": held.MessageID}, &ms)
		return ms["delivered"] == true
	})

	// Kill B's MCP process after it took a message but before anything
	// surfaced it; the restarted server (same Claude Code parent, same
	// session key) gets it again, once.
	_ = b.cs.Close()
	raw := bob.command("mcp")
	raw.Dir = bobDir
	rawErr := &lockedBuffer{}
	raw.Stderr = rawErr
	stdin, _ := raw.StdinPipe() // never initialized: nothing is surfaced
	if err := raw.Start(); err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	waitFor(t, "bob's raw mcp to connect", func() bool { return strings.Contains(rawErr.String(), "connected to mesh") })
	var lost sendOut
	a.ok("send_message", map[string]any{"to": "bob", "message": "do not lose me", "priority": "now"}, &lost)
	waitFor(t, "bob's raw mcp to take the message", func() bool { return strings.Contains(rawErr.String(), "message "+lost.MessageID+" from alice waits") })
	_ = raw.Process.Kill()
	_ = raw.Wait()
	b = startMCP(t, bob, bobDir)
	w := b.expect("the welcome after restart", func(n notification) bool { return n.Meta["event"] == "welcome" })
	ln := b.expect("the redelivered message", isMessage(lost.MessageID))
	if ln.Content != "[URGENT] alice: do not lose me" {
		t.Fatalf("redelivered %+v (welcome %+v)", ln, w)
	}
	b.quiet(2*time.Second, "a second delivery", isMessage(lost.MessageID))
	b.ok("check_messages", nil, &check)
	if len(check.Messages) != 0 {
		t.Fatalf("check_messages after restart: %+v", check)
	}

	// With --push=false everything comes through check_messages, once.
	_ = b.cs.Close()
	b = startMCP(t, bob, bobDir, "--push=false")
	var quietMsg sendOut
	a.ok("send_message", map[string]any{"to": "bob", "message": "poll me", "priority": "low"}, &quietMsg)
	deadline := time.Now().Add(10 * time.Second)
	for len(check.Messages) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		b.ok("check_messages", map[string]any{"limit": 5}, &check)
	}
	if len(check.Messages) != 1 || check.Messages[0].Text != "poll me" || check.Messages[0].MessageID != quietMsg.MessageID ||
		check.Messages[0].Priority != "low" || check.Messages[0].From != "alice" {
		t.Fatalf("check_messages %+v", check)
	}
	b.ok("check_messages", nil, &check)
	if len(check.Messages) != 0 {
		t.Fatalf("check_messages twice: %+v", check)
	}
}

// hook posts /hook/set-status as Claude Code's hook does for a session
// whose MCP server is a child of this test process.
func hook(t *testing.T, b *broker, cwd, status string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"cwd": cwd, "pid": os.Getpid(), "status": status})
	resp, err := http.Post(b.base+"/hook/set-status", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		OK      bool `json:"ok"`
		Pending bool `json:"pending"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&r)
	if !r.OK || r.Pending {
		t.Fatalf("hook %s: %d %+v", status, resp.StatusCode, r)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Skills shared in the mesh are `meshctl mcp`'s prompts (issue 15 item 4),
// through the SDK's own client over stdio: listed with their description
// and author, fetched with their instructions at the time of the call, and
// a skill shared, changed or removed on the other replica is announced with
// notifications/prompts/list_changed and shows in the next list.
func TestMCPSkillsArePrompts(t *testing.T) {
	stack := newMCPStack(t)
	ownerID := stack.owner.config().Meshes[0]
	member, err := ownerID.identity()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	owner, err := client.Dial(ctx, client.Config{URL: stack.b2.ws(), MeshID: ownerID.MeshID, MemberID: ownerID.MemberID,
		Member: member, DisplayName: "owner"})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	skill := func(typ string, fields map[string]any) {
		t.Helper()
		fields["type"] = typ
		if _, err := owner.Request(ctx, fields, "skill_ack"); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	skill("share_skill", map[string]any{"name": "review", "description": "review a diff for races", "instructions": "Look for data races."})

	a := startMCP(t, stack.alice, t.TempDir(), "--skills-poll", "200ms")
	list := func() map[string]*mcp.Prompt {
		t.Helper()
		res, err := a.cs.ListPrompts(ctx, nil)
		if err != nil {
			t.Fatalf("prompts/list: %v\n%s", err, a.stderr.String())
		}
		out := map[string]*mcp.Prompt{}
		for _, p := range res.Prompts {
			out[p.Name] = p
		}
		return out
	}
	changed := func(what string) {
		t.Helper()
		select {
		case <-a.promptsChanged:
		case <-time.After(15 * time.Second):
			t.Fatalf("no prompts/list_changed after %s\n%s", what, a.stderr.String())
		}
	}
	ps := list()
	if p := ps["review"]; len(ps) != 1 || p == nil || p.Description != "review a diff for races (skill shared by owner in mesh mcp-team)" ||
		len(p.Arguments) != 1 || p.Arguments[0].Name != "input" || p.Arguments[0].Required {
		t.Fatalf("prompts %+v", ps)
	}
	text := func(name string, args map[string]string) string {
		t.Helper()
		res, err := a.cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("prompts/get %s: %v", name, err)
		}
		if len(res.Messages) != 1 || res.Messages[0].Role != "user" {
			t.Fatalf("prompts/get %s: %+v", name, res)
		}
		return res.Messages[0].Content.(*mcp.TextContent).Text
	}
	if got := text("review", map[string]string{"input": "main.go"}); got != "Look for data races.\n\nmain.go" {
		t.Fatalf("review %q", got)
	}

	// A new skill and a changed one, from the other replica: announced,
	// then listed; prompts/get reads the instructions as they are now.
	skill("share_skill", map[string]any{"name": "deploy", "description": "ship it", "instructions": "Run make deploy.",
		"manifest": map[string]any{"context": "fork"}})
	changed("a new skill")
	skill("share_skill", map[string]any{"name": "review", "description": "review a diff", "instructions": "Look for leaks."})
	waitFor(t, "both skills listed, review changed", func() bool {
		ps = list()
		return len(ps) == 2 && ps["deploy"] != nil && ps["review"].Description == "review a diff (skill shared by owner in mesh mcp-team)"
	})
	if got := text("review", nil); got != "Look for leaks." {
		t.Fatalf("changed review %q", got)
	}
	if got := text("deploy", nil); !strings.HasPrefix(got, "Run the following skill in a sub-agent") || !strings.HasSuffix(got, "\n\nRun make deploy.") {
		t.Fatalf("deploy %q", got)
	}

	// A removed skill leaves the list; asking for it is an error naming it.
	for len(a.promptsChanged) > 0 {
		<-a.promptsChanged
	}
	skill("remove_skill", map[string]any{"name": "review"})
	changed("a removed skill")
	if ps = list(); len(ps) != 1 || ps["deploy"] == nil {
		t.Fatalf("after remove: %+v", ps)
	}
	if _, err := a.cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "review"}); err == nil || !strings.Contains(err.Error(), "review") {
		t.Fatalf("prompts/get of a removed skill: %v", err)
	}
}

// A topic post's channel notification names the topic (content and meta)
// and a reply carries reply_to_id; a v2 post, sealed with the topic key,
// says so instead of showing ciphertext.
func TestChannelParamsTopicAndReply(t *testing.T) {
	post := client.Message{Push: wire.Push{MessageID: "m1", SenderName: "ann", SenderPubkey: "k", Priority: "now",
		Topic: "ops", BodyVersion: 1, ReplyToID: "m0"}, Plaintext: []byte("deploy at noon")}
	p := messageParams("team", post)
	if p.Content != "[URGENT] ann in #ops: deploy at noon" || p.Meta["topic"] != "ops" || p.Meta["reply_to_id"] != "m0" {
		t.Fatalf("params %+v", p)
	}
	sealed := client.Message{Push: wire.Push{MessageID: "m2", SenderName: "ann", Priority: "next", Topic: "ops", BodyVersion: 2},
		DecryptErr: client.ErrTopicKey}
	if p := messageParams("team", sealed); p.Content != "ann in #ops: <cannot decrypt: "+client.ErrTopicKey.Error()+">" {
		t.Fatalf("sealed %q", p.Content)
	}
}
