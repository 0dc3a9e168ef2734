package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/wire"
)

// pending is a request waiting for its response.
type pending struct {
	cn       *conn  // the socket the request was written to
	respType string // expected response type, for the FIFO fallback
	seq      uint64
	ch       chan result // buffered 1; receives exactly once
}

type result struct {
	frame []byte
	err   error
}

// Sends are matched by the ack's id, other requests by _reqId (B.1); the
// two id spaces are kept apart.
func sendKey(id string) string { return "s:" + id }
func reqKey(id string) string  { return "r:" + id }

// resolve hands b to the request registered under key, if any.
func (c *Client) resolve(key string, b []byte) bool {
	c.mu.Lock()
	p, ok := c.pending[key]
	delete(c.pending, key)
	c.mu.Unlock()
	if ok {
		p.ch <- result{frame: b}
	}
	return ok
}

// resolveFIFO hands b to the oldest request waiting for a response of type
// typ (B.1: clients fall back to FIFO matching when no _reqId matches).
func (c *Client) resolveFIFO(typ string, b []byte) bool {
	if typ == "" {
		return false
	}
	c.mu.Lock()
	var (
		key  string
		best *pending
	)
	for k, p := range c.pending {
		if p.respType == typ && (best == nil || p.seq < best.seq) {
			key, best = k, p
		}
	}
	if best != nil {
		delete(c.pending, key)
	}
	c.mu.Unlock()
	if best != nil {
		best.ch <- result{frame: b}
	}
	return best != nil
}

func (c *Client) failPendingLocked(cn *conn) {
	for k, p := range c.pending {
		if p.cn == cn {
			delete(c.pending, k)
			p.ch <- result{err: fmt.Errorf("%w: %v", ErrConnectionLost, cn.err)}
		}
	}
}

func (c *Client) forget(key string, p *pending) {
	c.mu.Lock()
	if c.pending[key] == p {
		delete(c.pending, key)
	}
	c.mu.Unlock()
}

// waitConn returns the current socket, waiting for a reconnect if needed.
func (c *Client) waitConn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		cn, ready := c.cur, c.ready
		c.mu.Unlock()
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// roundTrip writes b and waits for the frame that answers it, bounded by
// ctx and Config.RequestTimeout (ErrTimeout).
func (c *Client) roundTrip(ctx context.Context, key, respType string, b []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, ErrTimeout)
	defer cancel()
	cn, err := c.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	p := &pending{cn: cn, respType: respType, ch: make(chan result, 1)}
	if err := c.register(key, p); err != nil {
		return nil, err
	}
	if err := cn.enqueue(ctx, b); err != nil {
		c.forget(key, p)
		return nil, err
	}
	select {
	case r := <-p.ch:
		return r.frame, r.err
	case <-ctx.Done():
		c.forget(key, p)
		return nil, context.Cause(ctx)
	}
}

func (c *Client) register(key string, p *pending) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-p.cn.done: // detach may already have run for this socket
		return fmt.Errorf("%w: %v", ErrConnectionLost, p.cn.err)
	default:
	}
	if _, dup := c.pending[key]; dup {
		return fmt.Errorf("client: request id %q already pending", key[2:])
	}
	c.seq++
	p.seq = c.seq
	c.pending[key] = p
	return nil
}

// asError turns an error frame into *ServerError.
func asError(b []byte) error {
	var e wire.Error
	if err := json.Unmarshal(b, &e); err != nil || e.Type != wire.TypeError {
		return nil
	}
	return &ServerError{Code: e.Code, Message: e.Message}
}

// Send encrypts plaintext for targetSpec as real clients do (B.12) and
// waits for its ack. A 64-lowercase-hex target gets a crypto_box DM sealed
// with the session secret when the client has one, else the member secret;
// any other target (*, @all, @group) gets the base64 broadcast body.
func (c *Client) Send(ctx context.Context, targetSpec string, priority meshd.Priority, plaintext []byte) (wire.Ack, error) {
	return c.SendReply(ctx, targetSpec, priority, plaintext, "")
}

// SendReply is Send with replyToId set to the message it answers ("" for
// none).
func (c *Client) SendReply(ctx context.Context, targetSpec string, priority meshd.Priority, plaintext []byte, replyToID string) (wire.Ack, error) {
	var nonce, ct string
	if isHex64(targetSpec) {
		key, err := c.keys.get(targetSpec, c.sender())
		if err != nil {
			return wire.Ack{}, err
		}
		nonce, ct = sealWith(key, plaintext)
	} else {
		nonce, ct = EncodeBroadcast(plaintext)
	}
	return c.SendRaw(ctx, wire.Send{TargetSpec: targetSpec, Priority: string(priority), Nonce: &nonce, Ciphertext: &ct, ReplyToID: replyToID})
}

// sender is the identity DMs are sealed with.
func (c *Client) sender() Identity {
	if c.cfg.Session != nil {
		return *c.cfg.Session
	}
	return c.cfg.Member
}

// SendRaw sends s as is (Type defaults to "send", ID to a fresh unique id)
// and waits for the ack whose id echoes it (B.4.1). An ack with queued
// false returns the ack and an *AckError; an error frame carrying the id
// returns a *ServerError.
func (c *Client) SendRaw(ctx context.Context, s wire.Send) (wire.Ack, error) {
	if s.Type == "" {
		s.Type = wire.TypeSend
	}
	if s.ID == "" {
		s.ID = meshd.NewID()
	}
	b, err := json.Marshal(s)
	if err != nil {
		return wire.Ack{}, fmt.Errorf("client: encoding send: %w", err)
	}
	resp, err := c.roundTrip(ctx, sendKey(s.ID), "", b)
	if err != nil {
		return wire.Ack{}, err
	}
	if err := asError(resp); err != nil {
		return wire.Ack{}, err
	}
	var ack wire.Ack
	if err := json.Unmarshal(resp, &ack); err != nil {
		return wire.Ack{}, fmt.Errorf("client: decoding ack: %w", err)
	}
	if !ack.Queued {
		return ack, &AckError{ID: s.ID, Reason: ack.Error}
	}
	return ack, nil
}

// Request sends frame with a _reqId (frame's own _reqId if it has one, else
// a fresh one) and returns the response that echoes it. An error frame
// answer returns *ServerError; with respType non-empty, a response of
// another type is an error too. Responses without _reqId are matched FIFO
// by respType (B.1).
func (c *Client) Request(ctx context.Context, frame any, respType string) (json.RawMessage, error) {
	fields, err := toFields(frame)
	if err != nil {
		return nil, err
	}
	var reqID string
	if raw, ok := fields["_reqId"]; ok {
		_ = json.Unmarshal(raw, &reqID)
	}
	if reqID == "" {
		reqID = meshd.NewID()
		fields["_reqId"], _ = json.Marshal(reqID)
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("client: encoding request: %w", err)
	}
	resp, err := c.roundTrip(ctx, reqKey(reqID), respType, b)
	if err != nil {
		return nil, err
	}
	if err := asError(resp); err != nil {
		return nil, err
	}
	if respType != "" {
		var env wire.Envelope
		_ = json.Unmarshal(resp, &env)
		if env.Type != respType {
			return resp, fmt.Errorf("client: got %q, want %q", env.Type, respType)
		}
	}
	return resp, nil
}

// toFields turns a frame (struct, map or raw JSON) into its JSON object.
func toFields(frame any) (map[string]json.RawMessage, error) {
	b, ok := frame.(json.RawMessage)
	if !ok {
		var err error
		if b, err = json.Marshal(frame); err != nil {
			return nil, fmt.Errorf("client: encoding request: %w", err)
		}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("client: request must be a JSON object")
	}
	return fields, nil
}

// SendFrame writes a fire-and-forget frame (set_status, join_group,
// client_ack, …). It returns once the frame is queued for writing, waiting
// for a reconnect if needed, bounded by ctx and Config.RequestTimeout.
func (c *Client) SendFrame(ctx context.Context, frame any) error {
	b, ok := frame.(json.RawMessage)
	if !ok {
		var err error
		if b, err = json.Marshal(frame); err != nil {
			return fmt.Errorf("client: encoding frame: %w", err)
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, ErrTimeout)
	defer cancel()
	cn, err := c.waitConn(ctx)
	if err != nil {
		return err
	}
	return cn.enqueue(ctx, b)
}

// ListPeers returns the mesh's live peers (B.6.8).
func (c *Client) ListPeers(ctx context.Context) ([]wire.Peer, error) {
	resp, err := c.Request(ctx, wire.Envelope{Type: wire.TypeListPeers}, wire.TypePeersList)
	if err != nil {
		return nil, err
	}
	var pl wire.PeersList
	if err := json.Unmarshal(resp, &pl); err != nil {
		return nil, fmt.Errorf("client: decoding peers_list: %w", err)
	}
	return pl.Peers, nil
}

// MessageStatus asks where a message is (B.4.4); id may be a prefix of 8+
// base62 chars.
func (c *Client) MessageStatus(ctx context.Context, id string) (wire.MessageStatusResult, error) {
	var r wire.MessageStatusResult
	resp, err := c.Request(ctx, wire.MessageStatus{Type: wire.TypeMessageStatus, MessageID: id}, "message_status_result")
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		return r, fmt.Errorf("client: decoding message_status_result: %w", err)
	}
	return r, nil
}

// SetStatus sets this presence's status manually (B.6.7; no reply).
func (c *Client) SetStatus(ctx context.Context, s meshd.Status) error {
	return c.SendFrame(ctx, map[string]any{"type": "set_status", "status": s})
}

// SetSummary sets this presence's summary (B.6.7; no reply).
func (c *Client) SetSummary(ctx context.Context, summary string) error {
	return c.SendFrame(ctx, map[string]any{"type": "set_summary", "summary": summary})
}

// JoinGroup adds this presence to a group (B.6.7; no reply). role may be "".
func (c *Client) JoinGroup(ctx context.Context, name, role string) error {
	f := map[string]any{"type": "join_group", "name": name}
	if role != "" {
		f["role"] = role
	}
	return c.SendFrame(ctx, f)
}

// LeaveGroup removes this presence from a group (B.6.7; no reply).
func (c *Client) LeaveGroup(ctx context.Context, name string) error {
	return c.SendFrame(ctx, map[string]any{"type": "leave_group", "name": name})
}

// SetVisible hides or shows this presence and waits for the broker's ack
// (B.6.7).
func (c *Client) SetVisible(ctx context.Context, visible bool) error {
	_, err := c.Request(ctx, map[string]any{"type": "set_visible", "visible": visible}, wire.TypeAck)
	return err
}

// StateEntry is a shared-state value (B.14.1); Value is null for a key
// never set.
type StateEntry struct {
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	UpdatedBy string          `json:"updatedBy"`
	UpdatedAt string          `json:"updatedAt"`
}

// GetState reads a shared-state key of the mesh (B.14.1).
func (c *Client) GetState(ctx context.Context, key string) (StateEntry, error) {
	var e StateEntry
	resp, err := c.Request(ctx, map[string]any{"type": "get_state", "key": key}, "state_result")
	if err != nil {
		return e, err
	}
	if err := json.Unmarshal(resp, &e); err != nil {
		return e, fmt.Errorf("client: decoding state_result: %w", err)
	}
	return e, nil
}

// SetState writes a shared-state key (B.14.1). The broker does not answer
// the setter, so SetState reads the key back on the same socket (frames
// are handled in order) and returns what is stored then.
func (c *Client) SetState(ctx context.Context, key string, value json.RawMessage) (StateEntry, error) {
	if err := c.SendFrame(ctx, map[string]any{"type": "set_state", "key": key, "value": value}); err != nil {
		return StateEntry{}, err
	}
	return c.GetState(ctx, key)
}
