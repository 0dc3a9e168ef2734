package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/testpg"
	"github.com/meshd/meshd/store"
	"github.com/meshd/meshd/wire"
)

func TestMain(m *testing.M) { testpg.Main(m) }

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// meshdBinary builds cmd/meshd once per test run: the end-to-end tests run
// the real binary, not the package.
func meshdBinary(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshd-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "meshd")
		out, err := exec.Command("go", "build", "-ldflags", "-X main.version=e2e -X main.gitSHA=abc1234", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a running meshd process.
type proc struct {
	cmd    *exec.Cmd
	base   string // http://127.0.0.1:port
	stderr *bytes.Buffer
	done   chan error
}

func (p *proc) ws() string { return "ws" + strings.TrimPrefix(p.base, "http") + "/ws" }

func startMeshd(t testing.TB, env ...string) *proc {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(meshdBinary(t), "serve")
	cmd.Env = append(os.Environ(), "BROKER_HOST=127.0.0.1", fmt.Sprintf("BROKER_PORT=%d", port), "LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), stderr: &stderr, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case err := <-p.done:
			p.done <- err // for the cleanup's wait
			t.Fatalf("meshd exited early: %v\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("meshd did not become healthy\n%s", stderr.String())
	return nil
}

type member struct {
	mesh meshd.Mesh
	m    meshd.Member
	key  client.Identity
}

func enroll(t testing.TB, dsn string, n int) []member {
	t.Helper()
	ctx := context.Background()
	st, err := store.New(ctx, store.Config{URL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mesh := meshd.Mesh{Name: "E2E", Slug: "e2e-" + meshd.NewID()[24:], OwnerUserID: "owner"}
	if err := st.CreateMesh(ctx, &mesh); err != nil {
		t.Fatal(err)
	}
	var out []member
	for i := 0; i < n; i++ {
		key := client.GenerateIdentity()
		m := meshd.Member{MeshID: mesh.ID, UserID: fmt.Sprintf("u%d", i), Pubkey: key.Pubkey, DisplayName: fmt.Sprintf("peer%d", i), Role: "member"}
		if err := st.CreateMember(ctx, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, member{mesh, m, key})
	}
	return out
}

func dial(t testing.TB, p *proc, mb member, acks bool) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: p.ws(), MeshID: mb.mesh.ID, MemberID: mb.m.ID, Member: mb.key,
		DisplayName: mb.m.DisplayName, CWD: "/e2e", PID: 1, AckPushes: acks})
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, p.stderr.String())
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func nextPush(t *testing.T, c *client.Client) client.Message {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.Pushes():
			if !ok {
				t.Fatal("push channel closed")
			}
			if m.Push.Subtype != "system" {
				return m
			}
		case <-timeout:
			t.Fatal("no push")
		}
	}
}

// The proof of interoperability: a real meshd process on real
// Postgres and (embedded) NATS, two enrolled members using the Go client.
func TestEndToEnd(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	p := startMeshd(t, "DATABASE_URL="+dsn, "SEND_RATE_BURST=100000", "SEND_RATE_PER_MIN=1000000")
	ms := enroll(t, dsn, 2)
	a := dial(t, p, ms[0], false)
	b := dial(t, p, ms[1], true)

	t.Run("encrypted DM arrives and decrypts", func(t *testing.T) {
		ack, err := a.Send(context.Background(), ms[1].key.Pubkey, meshd.PriorityNow, []byte("secret plan"))
		if err != nil || !ack.Queued {
			t.Fatalf("%+v %v", ack, err)
		}
		m := nextPush(t, b)
		if string(m.Plaintext) != "secret plan" || m.Push.Ciphertext == "" || strings.Contains(m.Push.Ciphertext, "secret") {
			t.Fatalf("push %+v plaintext %q", m.Push, m.Plaintext)
		}
	})
	t.Run("broadcast arrives", func(t *testing.T) {
		if _, err := b.Send(context.Background(), "*", meshd.PriorityNext, []byte("hi all")); err != nil {
			t.Fatal(err)
		}
		if m := nextPush(t, a); string(m.Plaintext) != "hi all" {
			t.Fatalf("%q", m.Plaintext)
		}
	})
	t.Run("peers_list shows both", func(t *testing.T) {
		peers, err := a.ListPeers(context.Background())
		if err != nil || len(peers) != 2 {
			t.Fatalf("%v %v", peers, err)
		}
	})
	t.Run("bad-signature hello is rejected with 1008", func(t *testing.T) {
		ws, _, err := websocket.DefaultDialer.Dial(p.ws(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		ts := float64(time.Now().UnixMilli())
		other := client.GenerateIdentity()
		hello := map[string]any{"type": "hello", "meshId": ms[0].mesh.ID, "memberId": ms[0].m.ID, "pubkey": ms[0].key.Pubkey,
			"sessionId": "x", "pid": 1, "cwd": "/", "timestamp": ts,
			"signature": wire.Sign(other.Secret, wire.HelloCanonical(ms[0].mesh.ID, ms[0].m.ID, ms[0].key.Pubkey, ts))}
		if err := ws.WriteJSON(hello); err != nil {
			t.Fatal(err)
		}
		var ce *websocket.CloseError
		for {
			_, _, err := ws.ReadMessage()
			if err != nil {
				if !errors.As(err, &ce) {
					t.Fatalf("read: %v", err)
				}
				break
			}
		}
		if ce.Code != 1008 || ce.Text != "bad_signature" {
			t.Fatalf("close %d %q", ce.Code, ce.Text)
		}
	})
	t.Run("1000 DMs arrive exactly once and in order", func(t *testing.T) {
		const n = 1000
		errc := make(chan error, 1)
		go func() {
			for i := 0; i < n; i++ {
				if _, err := a.Send(context.Background(), ms[1].key.Pubkey, meshd.PriorityNow, []byte(fmt.Sprint(i))); err != nil {
					errc <- fmt.Errorf("send %d: %w", i, err)
					return
				}
			}
			errc <- nil
		}()
		for i := 0; i < n; i++ {
			if m := nextPush(t, b); string(m.Plaintext) != fmt.Sprint(i) {
				t.Fatalf("message %d: got %q", i, m.Plaintext)
			}
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-b.Pushes():
			if m.Push.Subtype != "system" {
				t.Fatalf("duplicate push %q", m.Plaintext)
			}
		case <-time.After(time.Second):
		}
	})
	t.Run("health reports version, db and nats", func(t *testing.T) {
		resp, err := http.Get(p.base + "/health")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&h)
		if h["status"] != "ok" || h["db"] != "up" || h["nats"] != "up" || h["version"] != "e2e" || h["gitSha"] != "abc1234" {
			t.Fatalf("%v", h)
		}
	})
	t.Run("SIGTERM closes sockets with 1001 and exits 0", func(t *testing.T) {
		ws, _, err := websocket.DefaultDialer.Dial(p.ws(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		start := time.Now()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err = ws.ReadMessage()
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != 1001 || ce.Text != "shutting down" {
			t.Fatalf("close: %v", err)
		}
		select {
		case err := <-p.done:
			p.done <- err
			if err != nil {
				t.Fatalf("exit: %v\n%s", err, p.stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("meshd did not exit within 10 s of SIGTERM")
		}
		if d := time.Since(start); d > 8*time.Second {
			t.Fatalf("shutdown took %v", d)
		}
	})
}

func TestCommands(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	bin := meshdBinary(t)
	runCmd := func(env []string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return out.String(), errb.String(), code
	}
	if out, _, code := runCmd(nil, "version"); code != 0 || out != "meshd e2e (abc1234)\n" {
		t.Fatalf("version: %q %d", out, code)
	}
	if _, errOut, code := runCmd([]string{"DATABASE_URL="}, "serve"); code != 1 || !strings.Contains(errOut, "DATABASE_URL is required") {
		t.Fatalf("missing DATABASE_URL: %d %q", code, errOut)
	}
	if _, errOut, code := runCmd([]string{"DATABASE_URL=" + dsn, "BROKER_PORT=99999"}, "serve"); code != 1 || !strings.Contains(errOut, "BROKER_PORT must be an integer in [1, 65535]") {
		t.Fatalf("bad port: %d %q", code, errOut)
	}
	if _, errOut, code := runCmd([]string{"DATABASE_URL=" + dsn, "METRICS_ADDR=9464"}, "serve"); code != 1 || !strings.Contains(errOut, "METRICS_ADDR must be host:port or :port") {
		t.Fatalf("bad METRICS_ADDR: %d %q", code, errOut)
	}
	if _, errOut, code := runCmd(nil, "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	if _, errOut, code := runCmd([]string{"DATABASE_URL=" + dsn}, "migrate"); code != 0 {
		t.Fatalf("migrate: %d %s", code, errOut)
	}
	tok, errOut, code := runCmd([]string{"DATABASE_URL=" + dsn}, "token", "create", "--user", "alice")
	if code != 0 || len(strings.TrimSpace(tok)) < 32 {
		t.Fatalf("token create: %d %q %s", code, tok, errOut)
	}
	if _, errOut, code := runCmd([]string{"DATABASE_URL=" + dsn}, "token", "create"); code != 1 || !strings.Contains(errOut, "--user is required") {
		t.Fatalf("token without user: %d %q", code, errOut)
	}
	st, err := store.New(context.Background(), store.Config{URL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	user, _, err := st.LookupCLIToken(context.Background(), strings.TrimSpace(tok))
	if err != nil || user != "alice" {
		t.Fatalf("token lookup: %q %v", user, err)
	}
	checkTokenCommands(t, dsn, st, runCmd)
}

// checkTokenCommands drives token create --ttl, list and revoke through
// the real binary.
func checkTokenCommands(t *testing.T, dsn string, st *store.Store, runCmd func([]string, ...string) (string, string, int)) {
	t.Helper()
	env := []string{"DATABASE_URL=" + dsn}
	ctx := context.Background()
	if _, errOut, code := runCmd(env, "token", "create", "--user", "bob", "--ttl", "soon"); code != 1 || !strings.Contains(errOut, "want a duration") {
		t.Fatalf("bad ttl: %d %q", code, errOut)
	}
	tok, errOut, code := runCmd(env, "token", "create", "--user", "bob", "--ttl", "30d")
	if code != 0 || !strings.Contains(errOut, `"audit":true`) || !strings.Contains(errOut, `"msg":"cli token created"`) {
		t.Fatalf("token create --ttl: %d %q %s", code, tok, errOut)
	}
	tok = strings.TrimSpace(tok)
	if user, _, err := st.LookupCLIToken(ctx, tok); err != nil || user != "bob" {
		t.Fatalf("ttl token lookup: %q %v", user, err)
	}
	out, errOut, code := runCmd(env, "token", "list", "--user", "bob")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || strings.Contains(out, tok) {
		t.Fatalf("token list: %d %q %s", code, out, errOut)
	}
	id := strings.Fields(lines[1])[0]
	if exp := strings.Fields(lines[1])[4]; exp == "never" {
		t.Errorf("token list shows no expiry for the --ttl token: %q", lines[1])
	}
	if _, errOut, code := runCmd(env, "token", "revoke"); code != 1 || !strings.Contains(errOut, "exactly one of --id and --user") {
		t.Fatalf("revoke without target: %d %q", code, errOut)
	}
	out, errOut, code = runCmd(env, "token", "revoke", "--id", id)
	if code != 0 || !strings.Contains(out, "revoked 1 token(s): "+id) || !strings.Contains(errOut, `"msg":"cli token revoked"`) {
		t.Fatalf("token revoke: %d %q %s", code, out, errOut)
	}
	if _, _, err := st.LookupCLIToken(ctx, tok); err == nil {
		t.Fatal("revoked token still authenticates")
	}
	if _, errOut, code := runCmd(env, "token", "revoke", "--id", id); code != 1 || !strings.Contains(errOut, "no active token matched") {
		t.Fatalf("second revoke: %d %q", code, errOut)
	}
	out, _, _ = runCmd(env, "token", "list", "--all")
	if !strings.Contains(out, id) || !strings.Contains(out, "revoked ") || !strings.Contains(out, "alice") {
		t.Fatalf("token list --all: %q", out)
	}
}
