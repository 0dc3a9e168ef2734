package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Streams (docs/protocol.md B.14.2) across replicas. Stream data travels over the
// fanout on topic stream.<meshId>.<name>, published once; every socket that
// subscribed holds its own interest in the topic (so the replica is
// subscribed to NATS only while one of its sockets is, STYLE #9) and writes
// the frame unless it published it. Postgres holds the stream names and one
// subscription row per (stream, presence), which is what makes
// list_streams' subscriber counts cluster-wide. Upstream keeps subscriptions
// in one process's memory, so a publish on one node never reached
// subscribers on another.

func streamTopic(meshID, name string) string { return "stream." + meshID + "." + name }

// maxStreamName bounds a stream name; it also keeps the NATS subject far
// below the server's control-line limit.
const maxStreamName = 128

// validStreamName accepts what can be one NATS subject token: 1-128 bytes
// of valid UTF-8 without whitespace, control characters, '.', '*' or '>'
// (a dot would split the token, '*' and '>' are wildcards).
func validStreamName(name string) bool {
	if name == "" || len(name) > maxStreamName || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// streamFrame is a stream verb; create_stream names its stream in name,
// the others in stream.
type streamFrame struct {
	Type   string          `json:"type"`
	Name   string          `json:"name"`
	Stream string          `json:"stream"`
	Data   json.RawMessage `json:"data,omitempty"`
}

type streamData struct {
	Type        string          `json:"type"` // "stream_data"
	Stream      string          `json:"stream"`
	Data        json.RawMessage `json:"data,omitempty"`
	PublishedBy string          `json:"publishedBy"`
}

type streamInfo struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	CreatedBy       string `json:"createdBy"`
	CreatedAt       string `json:"createdAt"`
	SubscriberCount int    `json:"subscriberCount"`
}

// handleStreamVerb dispatches create_stream, subscribe, unsubscribe,
// publish and list_streams.
func (s *Server) handleStreamVerb(ctx context.Context, c *conn, data []byte, reqID string) error {
	var m streamFrame
	if err := decode(data, &m, "stream frame"); err != nil {
		return err
	}
	if m.Type == "list_streams" {
		return s.listStreams(ctx, c, reqID)
	}
	name := m.Stream
	if m.Type == "create_stream" && m.Name != "" {
		name = m.Name
	}
	if !validStreamName(name) {
		c.sendError("invalid_stream", fmt.Sprintf("invalid stream name %q: want 1-%d bytes without whitespace, '.', '*' or '>'",
			truncate(name, 64), maxStreamName), reqID)
		return nil
	}
	switch m.Type {
	case "create_stream":
		return s.createStream(ctx, c, name, reqID)
	case "subscribe":
		return s.subscribeStream(ctx, c, name, reqID)
	case "unsubscribe":
		return s.unsubscribeStream(ctx, c, name)
	default:
		return s.publishStream(ctx, c, name, m.Data)
	}
}

func withReqID(frame map[string]any, reqID string) map[string]any {
	if reqID != "" {
		frame["_reqId"] = reqID
	}
	return frame
}

func (s *Server) createStream(ctx context.Context, c *conn, name, reqID string) error {
	pres, _, _ := c.snapshot()
	id, err := s.cfg.Store.CreateStream(ctx, pres.MeshID, name, pres.DisplayName)
	if err != nil {
		return fmt.Errorf("create_stream failed: %w", err)
	}
	c.send(withReqID(map[string]any{"type": "stream_created", "id": id, "name": name}, reqID))
	return nil
}

// subscribeStream takes fan-out interest first (local, cheap), then records
// the subscription; no existence check (B.14.2). Subscribing twice is a
// no-op that answers again.
func (s *Server) subscribeStream(ctx context.Context, c *conn, name, reqID string) error {
	pres, _, _ := c.snapshot()
	cs := s.streamsOf(c)
	if !cs.has(name) {
		rel, err := s.cfg.Fanout.Subscribe(streamTopic(pres.MeshID, name), s.streamDeliver(c))
		if err != nil {
			return fmt.Errorf("subscribe failed: %w", err)
		}
		if err := s.cfg.Store.SubscribeStream(ctx, pres.MeshID, name, pres.ID, c.socketID); err != nil {
			rel()
			return fmt.Errorf("subscribe failed: %w", err)
		}
		// NATS sends SUB asynchronously; a round trip to the server puts our
		// interest there before the client hears "subscribed", so a publish
		// it then triggers on another replica is not missed.
		if s.cfg.NATS != nil {
			if err := s.cfg.NATS.Ping(ctx); err != nil {
				c.logger().Debug().Err(err).Msg("flush stream subscription")
			}
		}
		if !cs.add(name, rel) {
			// The socket closed meanwhile and its cleanup may have run
			// before our row existed.
			rel()
			_ = s.cfg.Store.UnsubscribeStream(ctx, pres.MeshID, name, pres.ID, c.socketID)
			return nil
		}
	}
	c.send(withReqID(map[string]any{"type": "subscribed", "stream": name}, reqID))
	return nil
}

// unsubscribeStream drops the interest and the row; no reply (B.14.2).
func (s *Server) unsubscribeStream(ctx context.Context, c *conn, name string) error {
	pres, _, _ := c.snapshot()
	if rel := s.streamsOf(c).remove(name); rel != nil {
		rel()
	}
	if err := s.cfg.Store.UnsubscribeStream(ctx, pres.MeshID, name, pres.ID, c.socketID); err != nil {
		return fmt.Errorf("unsubscribe failed: %w", err)
	}
	return nil
}

// publishStream publishes the stream_data frame once for the whole
// cluster; no reply (B.14.2). The payload is the publishing socket's id, a
// newline, then the frame: receivers skip their own and write the rest as
// is, without decoding it.
func (s *Server) publishStream(ctx context.Context, c *conn, name string, data json.RawMessage) error {
	pres, member, _ := c.snapshot()
	by := member.DisplayName
	if by == "" {
		by = "peer"
	}
	frame, err := json.Marshal(streamData{Type: "stream_data", Stream: name, Data: data, PublishedBy: by})
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	payload := make([]byte, 0, len(c.socketID)+1+len(frame))
	payload = append(append(append(payload, c.socketID...), '\n'), frame...)
	if err := s.cfg.Fanout.Publish(ctx, streamTopic(pres.MeshID, name), payload); err != nil {
		return fmt.Errorf("publish failed: %w", err)
	}
	s.met.messagesRouted.WithLabelValues("stream").Inc()
	return nil
}

// streamDeliver is c's fan-out callback for a stream topic. It runs on the
// NATS delivery goroutine and never blocks (conn.write only enqueues).
func (s *Server) streamDeliver(c *conn) func([]byte) {
	return func(data []byte) {
		from, frame, ok := bytes.Cut(data, []byte{'\n'})
		if !ok || string(from) == c.socketID {
			return
		}
		// The fanout shares data between callbacks: copy before queueing.
		if !c.write(bytes.Clone(frame)) {
			s.met.pushDropped.WithLabelValues(dropReason(c)).Inc()
		}
	}
}

func (s *Server) listStreams(ctx context.Context, c *conn, reqID string) error {
	pres, _, _ := c.snapshot()
	list, err := s.cfg.Store.ListStreams(ctx, pres.MeshID)
	if err != nil {
		return fmt.Errorf("list_streams failed: %w", err)
	}
	streams := []streamInfo{}
	for _, st := range list {
		streams = append(streams, streamInfo{ID: st.ID, Name: st.Name, CreatedBy: st.CreatedBy, CreatedAt: isoTime(st.CreatedAt), SubscriberCount: st.Subscribers})
	}
	c.send(withReqID(map[string]any{"type": "stream_list", "streams": streams}, reqID))
	return nil
}

// connStreams is one socket's stream interest: stream name → release. It
// lives on the melody session (per socket, created by the read loop on the
// first stream verb) and is emptied when the socket's done channel closes:
// hub.go's disconnect path does not know about streams.
type connStreams struct {
	mu     sync.Mutex
	closed bool              // guarded by mu: the socket is gone
	subs   map[string]func() // guarded by mu
}

const streamsKey = "meshd.streams"

// streamsOf returns c's registry, creating it and its cleanup goroutine on
// first use. Only c's read loop calls it, so get-then-set does not race.
func (s *Server) streamsOf(c *conn) *connStreams {
	if v, ok := c.sess.Get(streamsKey); ok {
		return v.(*connStreams)
	}
	cs := &connStreams{subs: map[string]func(){}}
	c.sess.Set(streamsKey, cs)
	go s.releaseStreamsOnClose(c, cs)
	return cs
}

// releaseStreamsOnClose waits for c to close, then releases its interest
// and deletes its subscription rows, so the counts drop at once.
func (s *Server) releaseStreamsOnClose(c *conn, cs *connStreams) {
	<-c.done
	cs.mu.Lock()
	cs.closed = true
	subs := cs.subs
	cs.subs = nil
	cs.mu.Unlock()
	for _, rel := range subs {
		rel()
	}
	pres, _, ok := c.snapshot()
	if !ok || len(subs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.DropSocketStreams(ctx, pres.ID, c.socketID); err != nil {
		c.logger().Warn().Err(err).Msg("drop stream subscriptions")
	}
}

func (cs *connStreams) has(name string) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	_, ok := cs.subs[name]
	return ok
}

// add records rel for name; false when the socket already closed.
func (cs *connStreams) add(name string, rel func()) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	cs.subs[name] = rel
	return true
}

func (cs *connStreams) remove(name string) func() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	rel := cs.subs[name]
	delete(cs.subs, name)
	return rel
}
