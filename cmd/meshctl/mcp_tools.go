package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// The MCP tools. Each returns an error for a bad argument or a broker
// refusal: the SDK turns it into a tool result with isError set and the
// error text, so Claude sees the broker's reason instead of a crash.

type sendIn struct {
	To       string `json:"to" jsonschema:"who: a display name, a pubkey or a unique pubkey prefix (see list_peers), * for everyone, @group for a group"`
	Message  string `json:"message" jsonschema:"the text to send (direct messages are end-to-end encrypted)"`
	Priority string `json:"priority,omitempty" jsonschema:"now (interrupts even a busy peer), next (default: when the peer is idle) or low"`
	ReplyTo  string `json:"reply_to,omitempty" jsonschema:"the message_id this message answers"`
}

type sendOut struct {
	MessageID string `json:"messageId"`
	Queued    bool   `json:"queued"`
	To        string `json:"to"`
	Encrypted bool   `json:"encrypted"`
}

type checkIn struct {
	Limit int `json:"limit,omitempty" jsonschema:"at most this many messages (default 20, at most 100)"`
}

type messageOut struct {
	MessageID         string `json:"message_id"`
	From              string `json:"from_name"`
	FromPubkey        string `json:"from_pubkey"`
	FromSessionPubkey string `json:"from_session_pubkey,omitempty"`
	Priority          string `json:"priority"`
	Text              string `json:"text"`
	Encrypted         bool   `json:"encrypted"`
	ReplyToID         string `json:"reply_to_id,omitempty"`
	Topic             string `json:"topic,omitempty"`
	CreatedAt         string `json:"created_at,omitempty"`
}

type checkOut struct {
	Messages  []messageOut `json:"messages"`
	Remaining int          `json:"remaining"`
	Dropped   uint64       `json:"dropped"`
}

type noIn struct{}

type peerOut struct {
	Name         string   `json:"name"`
	Pubkey       string   `json:"pubkey"`
	MemberPubkey string   `json:"member_pubkey"`
	Status       string   `json:"status"`
	Summary      string   `json:"summary,omitempty"`
	Groups       []string `json:"groups"`
	CWD          string   `json:"cwd,omitempty"`
	Kind         string   `json:"kind"` // "session" or "member"
	You          bool     `json:"you,omitempty"`
}

type peersOut struct {
	Mesh  string    `json:"mesh"`
	Peers []peerOut `json:"peers"`
}

type statusIn struct {
	Status string `json:"status" jsonschema:"idle, working or dnd (do not disturb: only priority now gets through)"`
}

type summaryIn struct {
	Summary string `json:"summary" jsonschema:"one line on what this session is doing, shown to peers"`
}

type okOut struct {
	OK bool `json:"ok"`
}

type messageStatusIn struct {
	MessageID string `json:"message_id" jsonschema:"a messageId returned by send_message (or a prefix of 8+ characters)"`
}

type getStateIn struct {
	Key string `json:"key" jsonschema:"the shared-state key"`
}

type setStateIn struct {
	Key   string `json:"key" jsonschema:"the shared-state key"`
	Value any    `json:"value" jsonschema:"any JSON value"`
}

type stateOut struct {
	Key       string `json:"key"`
	Value     any    `json:"value" jsonschema:"the stored JSON value, null when never set"`
	UpdatedBy string `json:"updated_by,omitempty"`
	UpdatedAt string `json:"updated_at,omitempty"`
}

func (b *bridge) addTools(s *mcp.Server) {
	mcp.AddTool(s, &mcp.Tool{Name: "send_message", Description: "Send a message to a peer (by name, pubkey or prefix), to everyone (*) or to a group (@name). " +
		"Example: {\"to\": \"bob\", \"message\": \"tests pass on main\", \"priority\": \"next\"}."}, b.sendMessage)
	mcp.AddTool(s, &mcp.Tool{Name: "check_messages", Description: "Return messages received and not yet shown (oldest first) and mark them seen. " +
		"Pushed messages were already shown and are not repeated."}, b.checkMessages)
	mcp.AddTool(s, &mcp.Tool{Name: "list_peers", Description: "List the peers online in the mesh: name, status, summary, groups, cwd, and whether each is a Claude Code session or a member connection."}, b.listPeers)
	mcp.AddTool(s, &mcp.Tool{Name: "set_status", Description: "Set this session's status: idle, working or dnd. Hooks set idle/working automatically."}, b.setStatus)
	mcp.AddTool(s, &mcp.Tool{Name: "set_summary", Description: "Tell peers in one line what this session is working on."}, b.setSummary)
	mcp.AddTool(s, &mcp.Tool{Name: "message_status", Description: "Where a sent message is: delivered or still queued, per recipient."}, b.messageStatus)
	mcp.AddTool(s, &mcp.Tool{Name: "get_state", Description: "Read a key of the mesh's shared state (null when never set)."}, b.getState)
	mcp.AddTool(s, &mcp.Tool{Name: "set_state", Description: "Write a key of the mesh's shared state; every peer sees the change. Example: {\"key\": \"release\", \"value\": \"frozen\"}."}, b.setState)
}

func (b *bridge) sendMessage(ctx context.Context, _ *mcp.CallToolRequest, in sendIn) (*mcp.CallToolResult, sendOut, error) {
	prio := meshd.Priority(in.Priority)
	if prio == "" {
		prio = meshd.PriorityNext
	}
	if !prio.Valid() {
		return nil, sendOut{}, fmt.Errorf("priority must be now, next or low, not %q", in.Priority)
	}
	if strings.TrimSpace(in.Message) == "" {
		return nil, sendOut{}, errors.New("message is empty")
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	spec, label, err := b.resolve(ctx, strings.TrimSpace(in.To))
	if err != nil {
		return nil, sendOut{}, err
	}
	ack, err := b.cl.SendReply(ctx, spec, prio, []byte(in.Message), in.ReplyTo)
	if err != nil {
		return nil, sendOut{}, fmt.Errorf("send to %s: %s", label, brokerReason(err))
	}
	return nil, sendOut{MessageID: ack.MessageID, Queued: ack.Queued, To: label, Encrypted: hex64.MatchString(spec)}, nil
}

// resolve maps a target to a targetSpec among the online peers.
func (b *bridge) resolve(ctx context.Context, target string) (spec, label string, err error) {
	if target == "" {
		return "", "", errors.New("to is empty")
	}
	if target == "*" || strings.HasPrefix(target, "@") || hex64.MatchString(target) {
		return matchPeer(nil, b.sid, target)
	}
	peers, err := b.cl.ListPeers(ctx)
	if err != nil {
		return "", "", fmt.Errorf("list peers: %s", brokerReason(err))
	}
	return matchPeer(peers, b.sid, target)
}

// matchPeer resolves target: `*`, `@group` and full pubkeys pass through;
// otherwise a display name (case-insensitive) or a pubkey prefix of 4+ hex
// characters must name exactly one online key, ourselves excluded.
func matchPeer(peers []wire.Peer, selfSID, target string) (spec, label string, err error) {
	switch {
	case target == "*" || strings.HasPrefix(target, "@"):
		return target, target, nil
	case hex64.MatchString(target):
		return strings.ToLower(target), short(strings.ToLower(target)), nil
	case strings.HasPrefix(target, "#"):
		return "", "", errors.New("topics (#…) are not supported by meshd")
	}
	lower := strings.ToLower(target)
	prefix := len(lower) >= 4 && strings.Trim(lower, "0123456789abcdef") == ""
	keys := map[string]bool{}
	var found []string
	for _, p := range peers {
		if p.SessionID == selfSID || keys[p.Pubkey] {
			continue
		}
		if strings.EqualFold(p.DisplayName, target) || (prefix && strings.HasPrefix(p.Pubkey, lower)) {
			keys[p.Pubkey] = true
			found = append(found, p.Pubkey)
		}
	}
	switch len(found) {
	case 0:
		return "", "", fmt.Errorf("no online peer is named or keyed %q (offline peers can be reached by full pubkey)", target)
	case 1:
		return found[0], fmt.Sprintf("%s (%s)", target, short(found[0])), nil
	}
	for i := range found {
		found[i] = short(found[i])
	}
	return "", "", fmt.Errorf("%d peers match %q (%s): use a longer pubkey prefix", len(found), target, strings.Join(found, ", "))
}

// brokerReason is the broker's own words for a refusal.
func brokerReason(err error) string {
	var ae *client.AckError
	var se *client.ServerError
	switch {
	case errors.As(err, &ae):
		return ae.Reason
	case errors.As(err, &se):
		return se.Code + ": " + se.Message
	}
	return err.Error()
}

func (b *bridge) checkMessages(ctx context.Context, _ *mcp.CallToolRequest, in checkIn) (*mcp.CallToolResult, checkOut, error) {
	limit := in.Limit
	if limit < 0 {
		return nil, checkOut{}, errors.New("limit must not be negative")
	}
	if limit == 0 {
		limit = 20
	}
	limit = min(limit, 100)
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(limit, len(b.queue))
	out := checkOut{Messages: make([]messageOut, 0, n), Dropped: b.dropped}
	for _, m := range b.queue[:n] {
		out.Messages = append(out.Messages, messageJSON(m))
		b.surfaceLocked(ctx, m)
	}
	b.queue = append([]client.Message(nil), b.queue[n:]...)
	out.Remaining = len(b.queue)
	return nil, out, nil
}

func messageJSON(m client.Message) messageOut {
	p := messageParams("", m)
	text := string(m.Plaintext)
	if m.DecryptErr != nil {
		text = fmt.Sprintf("<cannot decrypt: %v>", m.DecryptErr)
	}
	return messageOut{MessageID: m.Push.MessageID, From: p.Meta["from_name"], FromPubkey: p.Meta["from_pubkey"],
		FromSessionPubkey: p.Meta["from_session_pubkey"], Priority: m.Push.Priority, Text: text,
		Encrypted: m.Encrypted, ReplyToID: m.Push.ReplyToID, Topic: m.Push.Topic, CreatedAt: m.Push.CreatedAt}
}

func (b *bridge) listPeers(ctx context.Context, _ *mcp.CallToolRequest, _ noIn) (*mcp.CallToolResult, peersOut, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	peers, err := b.cl.ListPeers(ctx)
	if err != nil {
		return nil, peersOut{}, fmt.Errorf("list peers: %s", brokerReason(err))
	}
	out := peersOut{Mesh: b.id.Slug, Peers: make([]peerOut, 0, len(peers))}
	for _, p := range peers {
		po := peerOut{Name: p.DisplayName, Pubkey: p.Pubkey, MemberPubkey: p.MemberPubkey, Status: p.Status,
			Groups: []string{}, CWD: p.CWD, Kind: "member", You: p.SessionID == b.sid}
		if p.Summary != nil {
			po.Summary = *p.Summary
		}
		if p.Pubkey != p.MemberPubkey {
			po.Kind = "session"
		}
		for _, g := range p.Groups {
			po.Groups = append(po.Groups, g.Name)
		}
		out.Peers = append(out.Peers, po)
	}
	return nil, out, nil
}

func (b *bridge) setStatus(ctx context.Context, _ *mcp.CallToolRequest, in statusIn) (*mcp.CallToolResult, okOut, error) {
	if !meshd.Status(in.Status).Valid() {
		return nil, okOut{}, fmt.Errorf("status must be idle, working or dnd, not %q", in.Status)
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	return nil, okOut{true}, b.applied(ctx, b.cl.SetStatus(ctx, meshd.Status(in.Status)))
}

func (b *bridge) setSummary(ctx context.Context, _ *mcp.CallToolRequest, in summaryIn) (*mcp.CallToolResult, okOut, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	return nil, okOut{true}, b.applied(ctx, b.cl.SetSummary(ctx, strings.TrimSpace(in.Summary)))
}

// applied waits until a fire-and-forget frame was handled: the broker
// handles a socket's frames in order, so an answered request after it
// means it is applied.
func (b *bridge) applied(ctx context.Context, err error) error {
	if err == nil {
		_, err = b.cl.ListPeers(ctx)
	}
	if err != nil {
		return errors.New(brokerReason(err))
	}
	return nil
}

func (b *bridge) messageStatus(ctx context.Context, _ *mcp.CallToolRequest, in messageStatusIn) (*mcp.CallToolResult, wire.MessageStatusResult, error) {
	if strings.TrimSpace(in.MessageID) == "" {
		return nil, wire.MessageStatusResult{}, errors.New("message_id is empty")
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	r, err := b.cl.MessageStatus(ctx, strings.TrimSpace(in.MessageID))
	if err != nil {
		return nil, r, errors.New(brokerReason(err))
	}
	r.ReqID = ""
	return nil, r, nil
}

func (b *bridge) getState(ctx context.Context, _ *mcp.CallToolRequest, in getStateIn) (*mcp.CallToolResult, stateOut, error) {
	if in.Key == "" {
		return nil, stateOut{}, errors.New("key is empty")
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	e, err := b.cl.GetState(ctx, in.Key)
	if err != nil {
		return nil, stateOut{}, errors.New(brokerReason(err))
	}
	return nil, stateView(e), nil
}

func (b *bridge) setState(ctx context.Context, _ *mcp.CallToolRequest, in setStateIn) (*mcp.CallToolResult, stateOut, error) {
	if in.Key == "" {
		return nil, stateOut{}, errors.New("key is empty")
	}
	if in.Value == nil {
		return nil, stateOut{}, errors.New("value is required (any JSON value but null)")
	}
	raw, err := json.Marshal(in.Value)
	if err != nil {
		return nil, stateOut{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	e, err := b.cl.SetState(ctx, in.Key, raw)
	if err != nil {
		return nil, stateOut{}, errors.New(brokerReason(err))
	}
	if !jsonEqual(e.Value, raw) {
		return nil, stateView(e), fmt.Errorf("the broker did not store %s (it holds %s)", in.Key, e.Value)
	}
	return nil, stateView(e), nil
}

func stateView(e client.StateEntry) stateOut {
	var v any
	_ = json.Unmarshal(e.Value, &v)
	return stateOut{Key: e.Key, Value: v, UpdatedBy: e.UpdatedBy, UpdatedAt: e.UpdatedAt}
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
