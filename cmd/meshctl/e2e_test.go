package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/meshd/meshd/internal/testpg"
)

func TestMain(m *testing.M) { testpg.Main(m) }

var (
	buildOnce            sync.Once
	meshdBin, meshctlBin string
	buildErr             error
)

// binaries builds meshd and meshctl once per test run: the end-to-end test
// drives the real programs.
func binaries(t *testing.T) (meshd, meshctl string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "meshctl-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		meshdBin, meshctlBin = filepath.Join(dir, "meshd"), filepath.Join(dir, "meshctl")
		for _, b := range [][2]string{{meshdBin, "../meshd"}, {meshctlBin, "."}} {
			if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v: %s", b[1], err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return meshdBin, meshctlBin
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// broker is a running meshd process.
type broker struct {
	t      *testing.T
	cmd    *exec.Cmd
	base   string
	stderr *lockedBuffer
	done   chan error
}

func (b *broker) ws() string { return "ws" + strings.TrimPrefix(b.base, "http") + "/ws" }

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBroker runs `meshd serve` on port against dsn (NATS_URL unset:
// embedded NATS) and waits for /health.
func startBroker(t *testing.T, dsn string, port int, env ...string) *broker {
	t.Helper()
	bin, _ := binaries(t)
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "BROKER_HOST=127.0.0.1", fmt.Sprintf("BROKER_PORT=%d", port),
		"LOG_LEVEL=warn", "NATS_URL=", "BROKER_LEGACY_AUTH=", "BROKER_URL=", "APP_URL=")
	cmd.Env = append(cmd.Env, env...)
	b := &broker{t: t, cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = b.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-b.done; b.done <- nil })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(b.base + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return b
			}
		}
		select {
		case err := <-b.done:
			b.done <- err
			t.Fatalf("meshd exited early: %v\n%s", err, b.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("meshd did not become healthy\n%s", b.stderr.String())
	return nil
}

// stop sends SIGTERM and waits for a clean exit.
func (b *broker) stop() {
	b.t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-b.done:
		b.done <- err
		if err != nil {
			b.t.Fatalf("meshd exit: %v\n%s", err, b.stderr.String())
		}
	case <-time.After(15 * time.Second):
		b.t.Fatal("meshd did not stop")
	}
}

// person runs meshctl with their own config directory.
type person struct {
	t       *testing.T
	name    string
	dir     string
	outputs *lockedBuffer // everything meshctl printed for them, to check no secret leaks
}

func newPerson(t *testing.T, name string) *person {
	return &person{t: t, name: name, dir: filepath.Join(t.TempDir(), name), outputs: &lockedBuffer{}}
}

func (p *person) command(args ...string) *exec.Cmd {
	_, bin := binaries(p.t)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "MESHCTL_CONFIG_DIR="+p.dir, "MESHCTL_MESH=", "USER="+p.name)
	return cmd
}

// run runs meshctl and returns stdout, stderr and the exit code.
func (p *person) run(args ...string) (string, string, int) {
	p.t.Helper()
	cmd := p.command(args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatal(err)
	}
	fmt.Fprintf(p.outputs, "%s%s", out.String(), errb.String())
	shown := strings.Join(args, " ")
	if len(args) > 2 && args[0] == "login" {
		shown = "login --token <redacted> " + strings.Join(args[3:], " ")
	}
	p.t.Logf("%s$ meshctl %s\n%s%s", p.name, shown, out.String(), errb.String())
	return out.String(), errb.String(), code
}

// must runs meshctl and fails the test unless it exits 0.
func (p *person) must(args ...string) string {
	p.t.Helper()
	out, errOut, code := p.run(args...)
	if code != 0 {
		p.t.Fatalf("%s: meshctl %s: exit %d\n%s%s", p.name, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// mustJSON runs meshctl and decodes its stdout into v.
func (p *person) mustJSON(v any, args ...string) {
	p.t.Helper()
	out := p.must(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		p.t.Fatalf("meshctl %s: not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (p *person) config() config {
	p.t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "config.json"))
	if err != nil {
		p.t.Fatal(err)
	}
	var c config
	if err := json.Unmarshal(b, &c); err != nil {
		p.t.Fatal(err)
	}
	return c
}

// listener is a running `meshctl listen --json`.
type listener struct {
	cmd    *exec.Cmd
	lines  chan pushLine
	stderr *lockedBuffer
	done   chan error
}

func (p *person) listen(t *testing.T) *listener {
	t.Helper()
	cmd := p.command("listen", "--json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	l := &listener{cmd: cmd, lines: make(chan pushLine, 100), stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = l.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(p.outputs, sc.Text())
			var pl pushLine
			if err := json.Unmarshal(sc.Bytes(), &pl); err != nil {
				t.Errorf("listen printed a non-JSON line: %q", sc.Text())
				continue
			}
			l.lines <- pl
		}
		close(l.lines)
	}()
	go func() { l.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(l.stderr.String(), "listening on mesh") {
		if time.Now().After(deadline) {
			t.Fatalf("listen did not connect: %s", l.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l
}

// expect waits for a line matching ok.
func (l *listener) expect(t *testing.T, what string, ok func(pushLine) bool) pushLine {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case pl, open := <-l.lines:
			if !open {
				t.Fatalf("listen ended before %s: %s", what, l.stderr.String())
			}
			if ok(pl) {
				return pl
			}
		case <-timeout:
			t.Fatalf("no %s within 10 s", what)
		}
	}
}

// The end-to-end proof, driving only meshctl against a real meshd
// process on real PostgreSQL and (embedded) NATS: an owner creates a mesh
// and an invite; two peers join with the link, exchange an encrypted DM by
// display name and a broadcast, list peers, set status and grants; then
// the legacy body user_id shim works only with BROKER_LEGACY_AUTH=1.
func TestMeshctlEndToEnd(t *testing.T) {
	meshdPath, _ := binaries(t)
	dsn := testpg.NewDatabase(t)
	port := freePort(t)
	b := startBroker(t, dsn, port)
	tokCmd := exec.Command(meshdPath, "token", "create", "--user", "owner")
	tokCmd.Env = append(os.Environ(), "DATABASE_URL="+dsn, "LOG_LEVEL=warn")
	tokOut, err := tokCmd.Output()
	if err != nil {
		t.Fatalf("meshd token create: %v", err)
	}
	token := strings.TrimSpace(string(tokOut))
	owner, alice, bob := newPerson(t, "owner"), newPerson(t, "alice"), newPerson(t, "bob")

	owner.must("login", "--token", token, "--broker", b.ws())
	if out := owner.must("mesh", "create", "Demo Team"); !strings.Contains(out, "slug demo-team") {
		t.Fatalf("mesh create: %s", out)
	}
	assertOwnerName(t, dsn, "demo-team", "owner") // $USER, never "Demo Team-owner"
	var inv inviteResult
	owner.mustJSON(&inv, "invite", "demo-team", "--max-uses", "2", "--json")
	if inv.URL != b.base+"/i/"+inv.Code || len(inv.Code) != 8 {
		t.Fatalf("invite %+v", inv)
	}
	if out := alice.must("join", inv.URL, "--name", "alice"); !strings.Contains(out, "Joined mesh demo-team as \"alice\" (role member") {
		t.Fatalf("join: %s", out)
	}
	if inv.JoinURL != b.base+"/join/"+inv.Token {
		t.Fatalf("invite join_url %q", inv.JoinURL)
	}
	bob.must("join", inv.JoinURL, "--name", "bob") // the token link claudemesh users get
	human := owner.must("invite", "demo-team")
	if !regexp.MustCompile(`(?m)^Invite link: `+regexp.QuoteMeta(b.base)+`/i/[A-Z0-9]{8}\nToken link:  `+regexp.QuoteMeta(b.base)+`/join/\S{100,}\n`).MatchString(human) ||
		!strings.Contains(human, "claudemesh users run: claudemesh join "+b.base+"/join/") {
		t.Fatalf("invite output:\n%s", human)
	}
	if _, errOut, code := newPerson(t, "carol").run("join", inv.URL); code != 1 || !strings.Contains(errOut, "invite_exhausted") {
		t.Fatalf("third join on a 2-use invite: %d %s", code, errOut)
	}

	bl := bob.listen(t)
	var sent struct {
		MessageID string `json:"messageId"`
		Encrypted bool   `json:"encrypted"`
	}
	alice.mustJSON(&sent, "send", "bob", "the eagle lands at dawn", "--json")
	dm := bl.expect(t, "the DM", func(pl pushLine) bool { return pl.Type == "message" && pl.ID == sent.MessageID })
	if !sent.Encrypted || !dm.Encrypted || dm.From != "alice" || dm.Text == nil || *dm.Text != "the eagle lands at dawn" {
		t.Fatalf("DM %+v (sent %+v)", dm, sent)
	}
	assertCiphertextOpaque(t, dsn, sent.MessageID, "the eagle lands at dawn")
	// A follow-up that names it: the reply id reaches bob's listen (a
	// queued DM keeps its replyToId).
	var follow struct {
		MessageID string `json:"messageId"`
	}
	alice.mustJSON(&follow, "send", "bob", "bring a torch", "--reply-to", sent.MessageID, "--json")
	if re := bl.expect(t, "the follow-up", func(pl pushLine) bool { return pl.ID == follow.MessageID }); re.ReplyToID != sent.MessageID {
		t.Fatalf("follow-up %+v, want replyToId %s", re, sent.MessageID)
	}
	if out := alice.must("send", "*", "hello", "everyone"); !strings.Contains(out, "Sent broadcast to *") {
		t.Fatalf("broadcast: %s", out)
	}
	bc := bl.expect(t, "the broadcast", func(pl pushLine) bool { return pl.Type == "message" && pl.Text != nil && *pl.Text == "hello everyone" })
	if bc.Encrypted || bc.From != "alice" {
		t.Fatalf("broadcast %+v", bc)
	}

	bob.must("status", "set", "dnd")
	var peers struct {
		Peers []struct {
			DisplayName, Status, Pubkey, MemberPubkey string
		}
	}
	alice.mustJSON(&peers, "peers", "--json")
	bobKey, aliceKey := bob.config().Meshes[0].Pubkey, alice.config().Meshes[0].Pubkey
	found := false
	for _, p := range peers.Peers {
		if p.DisplayName == "bob" && p.Pubkey == bobKey {
			found = p.Status == "dnd"
		}
	}
	if !found {
		t.Fatalf("alice's peers lack bob in dnd: %+v", peers)
	}
	if out := alice.must("peers"); !regexp.MustCompile(`(?m)^NAME\s+STATUS\s+ONLINE\s+CWD\s+PUBKEY\n(.*\n)*bob\s+dnd\s`).MatchString(out) {
		t.Fatalf("peers table:\n%s", out)
	}
	// alice's one-shot send and peers connections were ephemeral (A.3-32):
	// another member sees bob's listen and nothing else, not even briefly.
	owner.mustJSON(&peers, "peers", "--json")
	if len(peers.Peers) != 1 || peers.Peers[0].DisplayName != "bob" {
		t.Fatalf("owner sees ghost peers from one-shot commands: %+v", peers)
	}

	// Grants: the owner blocks alice; her DM to the owner is refused.
	var g struct{ Grants map[string][]string }
	owner.mustJSON(&g, "grants", "set", aliceKey, "none", "--json")
	if caps, ok := g.Grants[aliceKey]; !ok || len(caps) != 0 {
		t.Fatalf("grants %+v", g)
	}
	ownerKey := owner.config().Meshes[0].Pubkey
	if _, errOut, code := alice.run("send", ownerKey, "let me in"); code != 1 || !strings.Contains(errOut, "meshctl: send to") {
		t.Fatalf("blocked DM: %d %s", code, errOut)
	}
	// Bob joined by invite (no login): his grants go over his own socket.
	// (He is dnd, so the DMs below are priority now.)
	bob.must("grants", "set", strings.ToUpper(aliceKey), "read", "dm", "--json")
	bob.mustJSON(&g, "grants", "list", "--json")
	if caps := g.Grants[aliceKey]; len(g.Grants) != 1 || strings.Join(caps, ",") != "read,dm" {
		t.Fatalf("bob's grants %+v", g)
	}
	if out := alice.must("send", "bob", "still allowed", "--priority", "now"); !strings.Contains(out, "Sent encrypted direct message to bob") {
		t.Fatalf("DM under grants read,dm: %s", out)
	}
	bl.expect(t, "the DM under grants", func(pl pushLine) bool { return pl.Type == "message" && pl.Text != nil && *pl.Text == "still allowed" })
	bob.must("grants", "set", aliceKey, "broadcast")
	if _, errOut, code := alice.run("send", "bob", "now refused", "--priority", "now"); code != 1 || !strings.Contains(errOut, "blocked by recipient grants") {
		t.Fatalf("DM without dm capability: %d %s", code, errOut)
	}
	if _, errOut, code := bob.run("grants", "set", aliceKey, "fly"); code != 2 || !strings.Contains(errOut, `unknown capability "fly"`) {
		t.Fatalf("bad capability: %d %s", code, errOut)
	}
	bob.must("grants", "set", aliceKey, "default")
	if out := bob.must("grants", "list"); !strings.Contains(out, "No grants in mesh demo-team") {
		t.Fatalf("grants list after default: %s", out)
	}
	if out := owner.must("mesh", "list"); !regexp.MustCompile(`demo-team\s+Demo Team\s+admin\s+yes\s+3\s`).MatchString(out) {
		t.Fatalf("mesh list:\n%s", out)
	}
	if out := owner.must("mesh", "rename", "demo-team", "Demo", "Crew"); !strings.Contains(out, `Renamed mesh demo-team to "Demo Crew"`) {
		t.Fatalf("mesh rename: %s", out)
	}
	if out := owner.must("mesh", "list"); !regexp.MustCompile(`demo-team\s+Demo Crew\s+admin\s+yes\s+3\s`).MatchString(out) {
		t.Fatalf("mesh list after rename:\n%s", out)
	}

	_ = bl.cmd.Process.Signal(syscall.SIGINT)
	if err := <-bl.done; err != nil {
		t.Fatalf("listen exit on SIGINT: %v %s", err, bl.stderr.String())
	}
	// A DM to an offline member waits on the broker for the next listen;
	// bob is still dnd (the new listen takes over his presence), which only
	// priority now gets through (B.4.2).
	alice.must("send", bobKey, "while you were out", "--priority", "now")
	bl = bob.listen(t)
	bl.expect(t, "the queued DM", func(pl pushLine) bool {
		return pl.Type == "message" && pl.Encrypted && pl.Text != nil && *pl.Text == "while you were out"
	})
	_ = bl.cmd.Process.Signal(syscall.SIGINT)
	if err := <-bl.done; err != nil {
		t.Fatalf("second listen exit on SIGINT: %v %s", err, bl.stderr.String())
	}
	assertNoSecretsPrinted(t, token, owner, alice, bob)
	b.stop()
	legacyShim(t, dsn, port)
}

// assertCiphertextOpaque checks the broker stored the DM sealed.
func assertCiphertextOpaque(t *testing.T, dsn, id, plaintext string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var ct string
	if err := conn.QueryRow(context.Background(), "SELECT ciphertext FROM mesh.message_queue WHERE id = $1", id).Scan(&ct); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(ct)
	if strings.Contains(ct, plaintext) || bytes.Contains(raw, []byte(plaintext)) || len(raw) != len(plaintext)+16 {
		t.Fatalf("stored ciphertext is not a crypto_box of the message: %q", ct)
	}
}

// assertOwnerName checks the display name of the mesh owner's member row.
func assertOwnerName(t *testing.T, dsn, slug, want string) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var got string
	if err := conn.QueryRow(context.Background(), `SELECT m.display_name FROM mesh.member m JOIN mesh.mesh ms ON ms.id = m.mesh_id
		WHERE ms.slug = $1 AND m.user_id = ms.owner_user_id`, slug).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("owner display name %q, want %q", got, want)
	}
}

// assertNoSecretsPrinted: no output of any command contains the bearer
// token or a secret key, and the config files are private.
func assertNoSecretsPrinted(t *testing.T, token string, people ...*person) {
	t.Helper()
	var all strings.Builder
	for _, p := range people {
		all.WriteString(p.outputs.String())
	}
	secrets := []string{token}
	for _, p := range people {
		for _, m := range p.config().Meshes {
			secrets = append(secrets, m.SecretKey, m.SecretKey[:64])
		}
		for _, path := range []string{p.dir, filepath.Join(p.dir, "config.json")} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o077 != 0 {
				t.Fatalf("%s has mode %v", path, fi.Mode().Perm())
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(all.String(), s) {
			t.Fatalf("a secret was printed: %s…", s[:8])
		}
	}
}

// legacyShim restarts meshd with and without BROKER_LEGACY_AUTH=1 and
// checks the body/query user_id path (B.9.3).
func legacyShim(t *testing.T, dsn string, port int) {
	b := startBroker(t, dsn, port, "BROKER_LEGACY_AUTH=1")
	if got := legacyHits(t, b); got != "0" {
		t.Fatalf("legacy hits at start: %s", got)
	}
	resp, body := get(t, b.base+"/cli/meshes?user_id=owner")
	if resp.StatusCode != 200 || !strings.Contains(body, `"slug":"demo-team"`) {
		t.Fatalf("legacy GET: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Deprecation") != `version="legacy-body-userid"; sunset="2026-05-15"` ||
		resp.Header.Get("Warning") != `299 - "body.user_id auth is deprecated; send Authorization: Bearer <session_token>"` {
		t.Fatalf("legacy headers %v", resp.Header)
	}
	if got := legacyHits(t, b); got != "1" {
		t.Fatalf("legacy hits after one call: %s", got)
	}
	if !strings.Contains(b.stderr.String(), "legacy auth accepted") {
		t.Fatalf("no warn log: %s", b.stderr.String())
	}
	b.stop()

	b = startBroker(t, dsn, port)
	resp, body = get(t, b.base+"/cli/meshes?user_id=owner")
	if resp.StatusCode != 401 || !strings.Contains(body, `"missing_bearer_token"`) || resp.Header.Get("Deprecation") != "" {
		t.Fatalf("without the flag: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	if got := legacyHits(t, b); got != "0" {
		t.Fatalf("legacy hits without the flag: %s", got)
	}
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func legacyHits(t *testing.T, b *broker) string {
	t.Helper()
	_, body := get(t, b.base+"/metrics")
	m := regexp.MustCompile(`(?m)^broker_legacy_auth_hits_total (\d+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no broker_legacy_auth_hits_total in /metrics")
	}
	return m[1]
}
