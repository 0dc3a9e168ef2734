package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

// buildMeshd builds cmd/meshd: the end-to-end test runs the real binary.
func buildMeshd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "meshd")
	if out, err := exec.Command("go", "build", "-o", bin, "../meshd").CombinedOutput(); err != nil {
		t.Fatalf("go build ../meshd: %v\n%s", err, out)
	}
	return bin
}

// startMeshd runs `meshd serve` on a free port against dsn with embedded
// NATS and send limits lifted, and returns its WebSocket URL and PID.
func startMeshd(t *testing.T, bin, dsn string) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "BROKER_HOST=127.0.0.1", fmt.Sprintf("BROKER_PORT=%d", port),
		"NATS_URL=", "LOG_LEVEL=warn", "SEND_RATE_BURST=1000000", "SEND_RATE_PER_MIN=100000000")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return fmt.Sprintf("ws://127.0.0.1:%d/ws", port), cmd.Process.Pid
			}
		}
	}
	t.Fatalf("meshd not ready\n%s", stderr.String())
	return "", 0
}

// A tiny burst against a real meshd (real PostgreSQL, embedded NATS):
// members enrolled over HTTP, encrypted DMs, client_ack, every DM
// accounted for.
func TestBurstEndToEnd(t *testing.T) {
	bin := buildMeshd(t)
	dsn := testpg.NewDatabase(t)
	ws, pid := startMeshd(t, bin, dsn)
	cmd := exec.Command(bin, "token", "create", "--user", "bench")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn)
	tok, err := cmd.Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"burst", "--url", ws, "--url", ws, "--token", strings.TrimSpace(string(tok)), "--peers", "4", "--msgs", "20",
		"--window", "4", "--pid", fmt.Sprint(pid), "--drain", "10s", "--json"}
	code := run(ctx, args, func(string) string { return "" }, &stdout, &stderr)
	var r Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("exit %d, report not JSON: %v\n%s\n%s", code, err, stdout.String(), stderr.String())
	}
	d := r.Delivery
	if code != 0 || d == nil || d.Attempted != 80 || d.Acked != 80 || d.Delivered != 80 || d.Lost != 0 || d.Duplicates != 0 {
		t.Fatalf("exit %d, delivery %+v, problems %v\n%s", code, d, r.Problems, stderr.String())
	}
	if r.Conns != 4 || r.E2E.N != 80 || r.AckLat.N != 80 || r.PeakRSS <= 0 || r.HelloRate <= 0 {
		t.Fatalf("report %+v", r)
	}
}
