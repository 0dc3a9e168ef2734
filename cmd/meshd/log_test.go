package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testpg"
)

// lockedBuffer is stderr shared by serve's goroutines and the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Every log line of a serving replica names its node exactly once (the
// broker used to add "node" to a logger that already had it), and HTTP
// requests are access-logged with their request id.
func TestServeLogLines(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	port := freePort(t)
	env := map[string]string{"DATABASE_URL": dsn, "BROKER_HOST": "127.0.0.1", "BROKER_PORT": fmt.Sprint(port),
		"LOG_LEVEL": "debug", "MESHD_NODE_ID": "node-log"}
	var stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr)
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitHealthy(t, base, done, &stderr)
	req, _ := http.NewRequest("GET", base+"/ws", nil) // not an upgrade: the broker logs it at debug
	req.Header.Set("X-Request-Id", "log-test-1")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d\n%s", code, stderr.String())
	}
	logs := stderr.String()
	var broker int
	for _, line := range strings.Split(logs, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		if n := strings.Count(line, `"node":`); n != 1 {
			t.Errorf("%d node keys: %s", n, line)
		}
		if strings.Contains(line, `"component":"broker"`) {
			broker++
		}
	}
	if broker == 0 {
		t.Fatalf("no broker line to check:\n%s", logs)
	}
	if !strings.Contains(logs, `"path":"/ws","status":400`) || !strings.Contains(logs, `"request_id":"log-test-1"`) {
		t.Fatalf("no access log line for /ws:\n%s", logs)
	}
}

func waitHealthy(t *testing.T, base string, done chan int, stderr *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/health"); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited %d:\n%s", code, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("not healthy:\n%s", stderr.String())
}
