package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd/internal/testpg"
)

// closedByServer reads from c until the server closes it and fails when
// that takes longer than limit (far above the configured timeouts, so a
// loaded machine cannot make it flaky; without the timeouts it never ends).
func closedByServer(t *testing.T, what string, c net.Conn, limit time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: still open after %s", what, limit)
	}
}

// Issue 12 item 6, against the real binary: a client that sends its header
// slowly, one that sends its body slowly and an idle keep-alive connection
// are each closed by the server; one IP cannot hold more than
// MAX_PREAUTH_PER_IP sockets that have not said hello (429
// too_many_preauth before the upgrade), and a slot frees when a socket
// closes.
func TestSlowAndIdleClientsAreCut(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	p := startMeshd(t, "DATABASE_URL="+dsn, "HTTP_READ_HEADER_TIMEOUT_SECONDS=1", "HTTP_READ_TIMEOUT_SECONDS=2",
		"HTTP_IDLE_TIMEOUT_SECONDS=1", "MAX_PREAUTH_PER_IP=3")
	addr := strings.TrimPrefix(p.base, "http://")
	const limit = 20 * time.Second
	dialTCP := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}

	t.Run("slow_header", func(t *testing.T) {
		c := dialTCP()
		_, _ = io.WriteString(c, "POST /join HTTP/1.1\r\nHost: x\r\n") // and never the blank line
		closedByServer(t, "slow header", c, limit)
	})
	t.Run("slow_body", func(t *testing.T) {
		c := dialTCP()
		_, _ = io.WriteString(c, "POST /hook/set-status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"cwd\":")
		closedByServer(t, "slow body", c, limit)
	})
	t.Run("idle_keep_alive", func(t *testing.T) {
		c := dialTCP()
		_, _ = io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 || resp.Close {
			t.Fatalf("health %v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		closedByServer(t, "idle keep-alive", c, limit)
	})
	t.Run("preauth_cap_per_ip_429", func(t *testing.T) {
		ws := strings.Replace(p.base, "http://", "ws://", 1) + "/ws"
		var open []*websocket.Conn
		for i := 0; i < 3; i++ {
			c, _, err := websocket.DefaultDialer.Dial(ws, nil)
			if err != nil {
				t.Fatalf("socket %d: %v", i, err)
			}
			t.Cleanup(func() { _ = c.Close() })
			open = append(open, c)
		}
		_, resp, err := websocket.DefaultDialer.Dial(ws, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("4th pre-hello socket: %v %v, want 429", resp, err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if body["ok"] != false || body["error"] != "too_many_preauth" {
			t.Fatalf("4th pre-hello socket: %v", body)
		}
		_ = open[0].Close()
		deadline := time.Now().Add(limit) // the server sees the close asynchronously
		for {
			c, _, err := websocket.DefaultDialer.Dial(ws, nil)
			if err == nil {
				_ = c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no slot after a pre-hello socket closed: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
