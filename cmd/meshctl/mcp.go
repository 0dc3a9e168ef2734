package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/pflag"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// `meshctl mcp` is a stdio MCP server for one Claude Code session (see
// docs/mcp.md). It holds one broker connection as its own session peer
// (session_hello, B.3), pushes what arrives into the conversation as
// notifications/claude/channel, and offers tools to talk to the mesh.
//
// Delivery: pushes are client_acked only once surfaced — pushed to the MCP
// client or returned by check_messages — so a crash before that loses
// nothing: the broker redelivers unacked rows (A.3-4). Until then they wait
// in a bounded buffer; overflow drops the new message, counts it and leaves
// it unacked, so it comes back after a restart or the claim lease.

const (
	// channelMethod and channelCapability are how Claude Code accepts
	// server pushes into the conversation today.
	channelMethod     = "notifications/claude/channel"
	channelCapability = "claude/channel"
	// defaultMCPBuffer bounds unsurfaced messages held in memory.
	defaultMCPBuffer = 500
	// surfacedMemory bounds the ids remembered as surfaced, to drop a
	// redelivery of something already shown (a reconnect can redeliver
	// a row whose client_ack was in flight).
	surfacedMemory = 4096
	// toolTimeout bounds one tool call's broker round trips.
	toolTimeout = 15 * time.Second
)

// channelTransport wraps the stdio transport to send notifications the SDK
// has no typed helper for: the SDK's connection allows concurrent writes.
type channelTransport struct {
	inner mcp.Transport
	mu    sync.Mutex
	conn  mcp.Connection // guarded by mu; nil until Connect
}

func (t *channelTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	conn, err := t.inner.Connect(ctx)
	if err == nil {
		t.mu.Lock()
		t.conn = conn
		t.mu.Unlock()
	}
	return conn, err
}

// notify writes one JSON-RPC notification.
func (t *channelTransport) notify(ctx context.Context, method string, params any) error {
	t.mu.Lock()
	conn := t.conn
	t.mu.Unlock()
	if conn == nil {
		return errors.New("mcp: not connected")
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	return conn.Write(ctx, &jsonrpc.Request{Method: method, Params: raw})
}

// channelParams is the notification's params: meta values are strings only.
type channelParams struct {
	Content string            `json:"content"`
	Meta    map[string]string `json:"meta"`
}

// bridge joins one broker connection and one MCP session.
type bridge struct {
	cl     *client.Client    // immutable
	id     *meshIdentity     // immutable
	sid    string            // our sessionId, immutable
	push   bool              // immutable: send channel notifications
	max    int               // immutable: buffer bound
	tr     *channelTransport // immutable
	stderr io.Writer         // immutable

	mu       sync.Mutex
	ready    bool             // guarded by mu; the MCP client is initialized
	queue    []client.Message // guarded by mu; received, not yet surfaced, oldest first
	dropped  uint64           // guarded by mu; messages the full queue refused
	surfaced map[string]bool  // guarded by mu; dedupe keys already surfaced
	order    []string         // guarded by mu; surfaced keys, oldest first
}

func runMCP(c *cli, fs *pflag.FlagSet) runFunc {
	mesh := fs.String("mesh", "", "mesh slug (default: $MESHCTL_MESH, else your only mesh)")
	name := fs.String("name", "", "display name of this session (default: your name in the mesh)")
	push := fs.Bool("push", true, "push messages into the conversation as notifications/claude/channel (off: only check_messages)")
	buffer := fs.Int("buffer", defaultMCPBuffer, "how many unsurfaced messages to hold; more are dropped unacked and come back later")
	skillsPoll := fs.Duration("skills-poll", skillsPollDefault, "how often to read the mesh's skills again (they are the server's prompts)")
	return func([]string) error {
		if *buffer < 1 {
			return usagef(commands()["mcp"].usage, "--buffer must be at least 1")
		}
		if *skillsPoll < 100*time.Millisecond {
			return usagef(commands()["mcp"].usage, "--skills-poll must be at least 100ms")
		}
		id, err := c.pickMesh(*mesh)
		if err != nil {
			return err
		}
		if *name != "" {
			id.DisplayName = *name
		}
		b := &bridge{id: id, push: *push, max: *buffer, stderr: c.stderr, surfaced: map[string]bool{}}
		if err := b.dial(c); err != nil {
			return err
		}
		defer b.cl.Close()
		go b.pump(c.ctx)
		go b.logErrors()
		in, out := readCloser(c.stdin), writeCloser(c.stdout)
		b.tr = &channelTransport{inner: &mcp.IOTransport{Reader: in, Writer: out}}
		srv := mcp.NewServer(&mcp.Implementation{Name: "meshd", Title: "meshd mesh", Version: version}, &mcp.ServerOptions{
			Instructions: mcpInstructions,
			Capabilities: &mcp.ServerCapabilities{
				Experimental: map[string]any{channelCapability: map[string]any{}},
				Tools:        &mcp.ToolCapabilities{},
				Prompts:      &mcp.PromptCapabilities{ListChanged: true},
			},
			InitializedHandler: func(ctx context.Context, _ *mcp.InitializedRequest) { go b.welcome(c.ctx) },
		})
		b.addTools(srv)
		skills := &skillPrompts{cl: b.cl, srv: srv, slug: id.Slug, stderr: c.stderr}
		skills.refreshLogged(c.ctx)
		srv.AddReceivingMiddleware(skills.listMiddleware)
		go skills.poll(c.ctx, *skillsPoll)
		fmt.Fprintf(c.stderr, "meshctl mcp: connected to mesh %s as %q (session %s)\n", id.Slug, id.DisplayName, short(b.cl.Pubkey()))
		err = srv.Run(c.ctx, b.tr)
		if err != nil && c.ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, mcp.ErrConnectionClosed) {
			return fmt.Errorf("mcp: %w", err)
		}
		return nil
	}
}

const mcpInstructions = "You are one peer in a meshd mesh: other Claude Code sessions can message you and you them. " +
	"Incoming messages arrive as channel notifications (\"[URGENT] name: text\" must be handled before anything else); " +
	"if you do not see them, call check_messages. Use list_peers to see who is online, send_message to talk " +
	"(reply_to with the message_id you answer), set_summary to tell others what you are working on."

// dial connects as a session of the member key, with a session keypair
// kept per Claude Code process so a restarted server is the same peer.
func (b *bridge) dial(c *cli) error {
	member, err := b.id.identity()
	if err != nil {
		return err
	}
	sess, err := c.sessionKey(b.id)
	if err != nil {
		return err
	}
	b.sid = "mcp-" + sess.Pubkey[:16]
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	defer cancel()
	cl, err := client.Dial(ctx, client.Config{
		URL: b.id.BrokerURL, MeshID: b.id.MeshID, MemberID: b.id.MemberID, Member: member, Session: &sess,
		DisplayName: b.id.DisplayName, SessionID: b.sid, PID: os.Getppid(), Channel: "meshctl-mcp", PeerType: "claude",
		AckPushes: true, DeferAcks: true, Reconnect: true, OnEvent: connectionLog(b.stderr, "meshctl mcp"),
	})
	if err != nil {
		return fmt.Errorf("connect to %s: %w", b.id.BrokerURL, err)
	}
	b.cl = cl
	return nil
}

func (b *bridge) logErrors() {
	for e := range b.cl.Errors() {
		fmt.Fprintf(b.stderr, "meshctl mcp: broker error %s: %s\n", e.Code, e.Message)
	}
}

// pump takes every push off the connection.
func (b *bridge) pump(ctx context.Context) {
	for m := range b.cl.Pushes() {
		b.take(ctx, m)
	}
}

func (b *bridge) take(ctx context.Context, m client.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.System() {
		if b.ready && b.push {
			_ = b.tr.notify(ctx, channelMethod, systemParams(b.id.Slug, m))
		}
		_ = b.cl.Ack(ctx, m)
		return
	}
	key := m.DedupeKey()
	if b.surfaced[key] {
		_ = b.cl.Ack(ctx, m) // a redelivery of what was shown: confirm again
		return
	}
	if b.ready && b.push && b.pushLocked(ctx, m) {
		return
	}
	for _, q := range b.queue {
		if q.DedupeKey() == key {
			return
		}
	}
	if len(b.queue) >= b.max {
		b.dropped++
		fmt.Fprintf(b.stderr, "meshctl mcp: buffer full (%d): message %s left unacked for redelivery (%d dropped so far)\n", b.max, m.Push.MessageID, b.dropped)
		return
	}
	b.queue = append(b.queue, m)
	fmt.Fprintf(b.stderr, "meshctl mcp: message %s from %s waits to be surfaced (%d waiting)\n", m.Push.MessageID, senderName(m), len(b.queue))
}

// pushLocked notifies the MCP client of m and, when that was written,
// marks it surfaced and acks it.
func (b *bridge) pushLocked(ctx context.Context, m client.Message) bool {
	if err := b.tr.notify(ctx, channelMethod, messageParams(b.id.Slug, m)); err != nil {
		fmt.Fprintf(b.stderr, "meshctl mcp: push failed: %v\n", err)
		return false
	}
	b.surfaceLocked(ctx, m)
	return true
}

func (b *bridge) surfaceLocked(ctx context.Context, m client.Message) {
	key := m.DedupeKey()
	if !b.surfaced[key] {
		b.surfaced[key] = true
		b.order = append(b.order, key)
		if len(b.order) > surfacedMemory {
			delete(b.surfaced, b.order[0])
			b.order = b.order[1:]
		}
	}
	if err := b.cl.Ack(ctx, m); err != nil {
		fmt.Fprintf(b.stderr, "meshctl mcp: client_ack %s: %v (the broker will redeliver it)\n", m.Push.MessageID, err)
	}
}

// welcome runs once the MCP client is initialized: one notification with
// who is online and how much waited, then what waited is pushed.
func (b *bridge) welcome(ctx context.Context) {
	online := -1
	lctx, cancel := context.WithTimeout(ctx, toolTimeout)
	if peers, err := b.cl.ListPeers(lctx); err == nil {
		online = len(othersOf(peers, b.sid))
	}
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ready = true
	if !b.push {
		return
	}
	waiting := len(b.queue)
	who := "unknown"
	if online >= 0 {
		who = strconv.Itoa(online)
	}
	_ = b.tr.notify(ctx, channelMethod, channelParams{
		Content: fmt.Sprintf("Connected to mesh %s as %s: %s other peer(s) online, %d message(s) waiting.", b.id.Slug, b.id.DisplayName, who, waiting),
		Meta: map[string]string{"event": "welcome", "mesh_slug": b.id.Slug, "peers_online": who,
			"messages_waiting": strconv.Itoa(waiting), "session_pubkey": b.cl.Pubkey()},
	})
	rest := b.queue
	b.queue = nil
	for i, m := range rest {
		if !b.pushLocked(ctx, m) {
			b.queue = append(b.queue, rest[i:]...)
			return
		}
	}
}

// messageParams renders a message for the conversation.
func messageParams(slug string, m client.Message) channelParams {
	p := m.Push
	name := senderName(m)
	text := string(m.Plaintext)
	if m.DecryptErr != nil {
		text = fmt.Sprintf("<cannot decrypt: %v>", m.DecryptErr)
	}
	content := name + ": " + text
	if p.Topic != "" {
		content = name + " in #" + p.Topic + ": " + text
	}
	switch p.Priority {
	case "now":
		content = "[URGENT] " + content
	case "low":
		content = "[low] " + content
	}
	member := p.SenderMemberPubkey
	if member == "" {
		member = p.SenderPubkey
	}
	meta := map[string]string{"from_name": name, "from_pubkey": member, "mesh_slug": slug,
		"priority": p.Priority, "message_id": p.MessageID}
	if p.SenderPubkey != member {
		meta["from_session_pubkey"] = p.SenderPubkey
	}
	if p.ReplyToID != "" {
		meta["reply_to_id"] = p.ReplyToID
	}
	if p.Topic != "" {
		meta["topic"] = p.Topic
	}
	return channelParams{Content: content, Meta: meta}
}

func senderName(m client.Message) string {
	if m.Push.SenderName != "" {
		return m.Push.SenderName
	}
	return short(m.Push.SenderPubkey)
}

// systemParams renders peer_joined / peer_left / peer_returned.
func systemParams(slug string, m client.Message) channelParams {
	var ev wire.SystemEvent
	_ = json.Unmarshal(m.Push.EventData, &ev)
	who := ev.DisplayName
	if who == "" {
		who = ev.Name
	}
	if who == "" {
		who = short(ev.Pubkey)
	}
	verb := map[string]string{"peer_joined": "joined", "peer_left": "left", "peer_returned": "is back"}[m.Push.Event]
	if verb == "" {
		verb = m.Push.Event
	}
	return channelParams{
		Content: fmt.Sprintf("%s %s mesh %s", who, verb, slug),
		Meta:    map[string]string{"event": m.Push.Event, "mesh_slug": slug, "from_name": who, "from_pubkey": ev.Pubkey},
	}
}

// othersOf drops our own presence from a peers list.
func othersOf(peers []wire.Peer, sid string) []wire.Peer {
	out := make([]wire.Peer, 0, len(peers))
	for _, p := range peers {
		if p.SessionID != sid {
			out = append(out, p)
		}
	}
	return out
}

// readCloser and writeCloser adapt the CLI's streams to the SDK's
// IOTransport, which wants closers.
func readCloser(r io.Reader) io.ReadCloser {
	if rc, ok := r.(io.ReadCloser); ok {
		return rc
	}
	return io.NopCloser(r)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

func writeCloser(w io.Writer) io.WriteCloser {
	if wc, ok := w.(io.WriteCloser); ok {
		return wc
	}
	return nopWriteCloser{w}
}
