package broker_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/testenv"
)

// Helpers shared by the verb tests.

// request sends frame and returns the response of type respType.
func request(t *testing.T, c *client.Client, frame map[string]any, respType string) map[string]any {
	t.Helper()
	return testenv.Request(t, c, frame, respType)
}

// requestError sends frame and returns the error frame that answers it.
func requestError(t *testing.T, c *client.Client, frame map[string]any) *client.ServerError {
	t.Helper()
	return testenv.RequestError(t, c, frame)
}

func sendFrame(t *testing.T, c *client.Client, frame map[string]any) {
	t.Helper()
	if err := c.SendFrame(context.Background(), frame); err != nil {
		t.Fatal(err)
	}
}

// nextFrame waits for an unsolicited frame of type typ on c.
func nextFrame(t *testing.T, c *client.Client, typ string, d time.Duration) map[string]any {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case raw, ok := <-c.Frames():
			if !ok {
				t.Fatalf("closed while waiting for %s", typ)
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			if m["type"] == typ {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s frame within %v", typ, d)
		}
	}
}

// noFrame asserts c gets no frame of type typ within d.
func noFrame(t *testing.T, c *client.Client, typ string, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case raw := <-c.Frames():
			if strings.Contains(string(raw), `"type":"`+typ+`"`) {
				t.Fatalf("unexpected frame %s", raw)
			}
		case <-timeout:
			return
		}
	}
}

// streamCounts returns list_streams' subscriber counts by name.
func streamCounts(t *testing.T, c *client.Client) map[string]int {
	t.Helper()
	res := request(t, c, map[string]any{"type": "list_streams"}, "stream_list")
	out := map[string]int{}
	for _, s := range res["streams"].([]any) {
		m := s.(map[string]any)
		out[m["name"].(string)] = int(m["subscriberCount"].(float64))
	}
	return out
}

// Subscribe on replica 0, publish on replica 1: delivered to every
// subscriber on both replicas except the publisher, counted once, and the
// subscriber counts are cluster-wide (the gap upstream documented).
func TestStreamsAcrossReplicas(t *testing.T) {
	e := newEnv(t, 2, nil)
	mesh := e.newMesh("streams")
	alice, bob, carol := e.enroll(mesh, "alice"), e.enroll(mesh, "bob"), e.enroll(mesh, "carol")
	a, b, c := e.dial(0, alice, nil), e.dial(1, bob, nil), e.dial(1, carol, nil)

	created := request(t, a, map[string]any{"type": "create_stream", "name": "builds", "_reqId": "r1"}, "stream_created")
	if created["name"] != "builds" || created["id"] == "" || created["_reqId"] != "r1" {
		t.Fatalf("stream_created = %v", created)
	}
	again := request(t, b, map[string]any{"type": "create_stream", "name": "builds"}, "stream_created")
	if again["id"] != created["id"] {
		t.Fatalf("create on the other replica = %v, want id %v", again, created["id"])
	}
	for _, cl := range []*client.Client{a, b, c} {
		sub := request(t, cl, map[string]any{"type": "subscribe", "stream": "builds", "_reqId": "s"}, "subscribed")
		if sub["stream"] != "builds" || sub["_reqId"] != "s" {
			t.Fatalf("subscribed = %v", sub)
		}
	}
	for _, cl := range []*client.Client{a, b} {
		if got := streamCounts(t, cl)["builds"]; got != 3 {
			t.Fatalf("subscriberCount = %d, want 3 (both replicas)", got)
		}
	}

	routed := counter(t, e.replicas[1], "broker_messages_routed_total", "priority", "stream")
	sendFrame(t, c, map[string]any{"type": "publish", "stream": "builds", "data": map[string]any{"step": 1}})
	for _, cl := range []*client.Client{a, b} {
		got := nextFrame(t, cl, "stream_data", 5*time.Second)
		if got["stream"] != "builds" || got["publishedBy"] != "carol" || got["data"].(map[string]any)["step"] != 1.0 {
			t.Fatalf("stream_data = %v", got)
		}
	}
	if d := counter(t, e.replicas[1], "broker_messages_routed_total", "priority", "stream") - routed; d != 1 {
		t.Fatalf("routed{stream} += %v, want 1", d)
	}
	streamCounts(t, c) // a round trip after the fan-out reached its replica
	noFrame(t, c, "stream_data", 300*time.Millisecond)

	// unsubscribe: no reply, the count drops and nothing more arrives.
	sendFrame(t, a, map[string]any{"type": "unsubscribe", "stream": "builds"})
	waitFor(t, 5*time.Second, "count 2 after unsubscribe", func() bool { return streamCounts(t, b)["builds"] == 2 })
	// close: the socket's subscriptions die with it.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "count 1 after close", func() bool { return streamCounts(t, a)["builds"] == 1 })
	sendFrame(t, c, map[string]any{"type": "publish", "stream": "builds", "data": "two"})
	noFrame(t, a, "stream_data", 300*time.Millisecond)
	for _, r := range e.replicas {
		if err := r.srv.Hub().ConsistencyCheck(); err != nil {
			t.Fatal(err)
		}
		if err := r.bus.ConsistencyCheck(); err != nil {
			t.Fatal(err)
		}
	}
}

// Stream names become NATS subject tokens: bad ones get invalid_stream on
// every verb, and the socket keeps working.
func TestStreamBadNames(t *testing.T) {
	e := newEnv(t, 1, nil)
	mesh := e.newMesh("badstreams")
	a := e.dial(0, e.enroll(mesh, "alice"), nil)
	names := []struct{ name, stream string }{
		{"empty", ""},
		{"dot_splits_token", "a.b"},
		{"star_wildcard", "a*"},
		{"gt_wildcard", ">"},
		{"space", "a b"},
		{"tab", "a\tb"},
		{"control", "a\x01"},
		{"too_long", strings.Repeat("x", 129)},
	}
	for _, tt := range names {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range []map[string]any{
				{"type": "create_stream", "name": tt.stream},
				{"type": "subscribe", "stream": tt.stream},
				{"type": "publish", "stream": tt.stream, "data": 1},
			} {
				if se := requestError(t, a, f); se.Code != "invalid_stream" {
					t.Fatalf("%v: error %+v, want invalid_stream", f["type"], se)
				}
			}
		})
	}
	request(t, a, map[string]any{"type": "subscribe", "stream": "ok-name_1:ü"}, "subscribed")
	if got := streamCounts(t, a); len(got) != 0 {
		t.Fatalf("streams = %v, want none created", got)
	}
}
