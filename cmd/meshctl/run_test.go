package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// runIn runs meshctl in-process with its config in dir.
func runIn(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	env := map[string]string{"MESHCTL_CONFIG_DIR": dir, "USER": "tester"}
	var out, errb bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// Every command answers --help and -h on stdout with exit 0, listing each
// of its flags (cobra's own flag set) with its placeholder and text.
func TestHelpOnEveryCommand(t *testing.T) {
	dir := t.TempDir()
	root := newRoot(&cli{})
	for name, cmd := range commands() {
		sub, _, err := root.Find(strings.Fields(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, help := range []string{"--help", "-h"} {
			args := append(strings.Fields(name), help)
			out, errOut, code := runIn(t, dir, args...)
			if code != 0 || !strings.HasPrefix(out, "usage: meshctl "+cmd.usage+"\n") || errOut != "" ||
				!strings.Contains(out, "  -h, --help\n      show this help\n") {
				t.Errorf("%s %s: %d %q %q", name, help, code, out, errOut)
			}
			sub.LocalFlags().VisitAll(func(f *pflag.Flag) {
				if !strings.Contains(out, "--"+f.Name) || !strings.Contains(out, "      "+f.Usage) {
					t.Errorf("%s %s lacks --%s: %q", name, help, f.Name, out)
				}
			})
		}
	}
	out, _, _ := runIn(t, dir, "send", "--help")
	for _, want := range []string{"  --mesh SLUG\n", "  --priority now|next|low\n      now (even to busy peers), next or low (default next)\n", "  --json\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("send --help lacks %q: %q", want, out)
		}
	}
	out, _, code := runIn(t, dir, "--help")
	for name := range commands() {
		if code != 0 || !strings.Contains(out, "  meshctl "+name+" ") {
			t.Fatalf("top-level --help lacks %s: %d %q", name, code, out)
		}
	}
	if _, _, code := runIn(t, dir); code != 2 {
		t.Fatalf("no arguments: exit %d", code)
	}
}

// Command-line mistakes exit 2 with one error line and the usage line.
func TestUsageErrors(t *testing.T) {
	key := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown_command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown_subcommand", []string{"mesh", "explode"}, `unknown command "mesh explode"`},
		{"send_nothing", []string{"send"}, "send needs an argument"},
		{"send_no_message", []string{"send", "bob"}, "send needs a target and a message"},
		{"send_bad_priority", []string{"send", "--priority", "urgent", "bob", "hi"}, "--priority must be now, next or low"},
		{"send_unknown_flag", []string{"send", "--bogus", "bob", "hi"}, "send: unknown flag: --bogus\nusage: meshctl send "},
		{"send_misspelt_flag", []string{"send", "--priorty", "now", "bob", "hi"}, "unknown flag: --priorty; did you mean --priority?"},
		{"go_style_flag", []string{"peers", "-json"}, "unknown shorthand flag: 'j' in -json; did you mean --json?"},
		{"flag_without_value", []string{"send", "bob", "hi", "--mesh"}, "send: flag needs an argument: --mesh"},
		{"bad_int", []string{"invite", "--max-uses", "many"}, `invalid argument "many" for "--max-uses"`},
		{"bad_duration", []string{"mcp", "--skills-poll", "soon"}, `invalid argument "soon" for "--skills-poll"`},
		{"mesh_create_no_name", []string{"mesh", "create"}, "mesh create takes 1 argument(s), got 0"},
		{"login_no_token", []string{"login"}, "login: --token is required"},
		{"grants_bad_pubkey", []string{"grants", "set", "xyz", "dm"}, `"xyz" is not a 64-hex pubkey`},
		{"grants_bad_cap", []string{"grants", "set", key, "fly"}, `unknown capability "fly"`},
		{"grants_no_caps", []string{"grants", "set", key}, "needs a pubkey and at least one capability"},
		{"status_bad", []string{"status", "set", "sleepy"}, "status must be idle, working or dnd"},
		{"invite_bad_role", []string{"invite", "x", "--role", "god"}, "--role must be member or admin"},
		{"listen_bad_status", []string{"listen", "--status", "x"}, "--status must be idle, working or dnd"},
		{"join_two_args", []string{"join", "a", "b"}, "join takes 1 argument(s), got 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runIn(t, t.TempDir(), tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.want) || !strings.HasPrefix(errOut, "meshctl: ") {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errOut, tt.want)
			}
		})
	}
}

// Failures exit 1 with exactly one line on stderr.
func TestRuntimeErrors(t *testing.T) {
	owner := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	invite := func(exp time.Time, tamper bool) string {
		p := &wire.InvitePayload{V: 1, MeshID: "m1", MeshSlug: "team", BrokerURL: "ws://127.0.0.1:1/ws",
			ExpiresAt: exp.Unix(), MeshRootKey: "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA", Role: "member"}
		wire.SignInvite(p, owner)
		if tamper {
			p.Role = "admin"
		}
		tok, _ := wire.EncodeInviteToken(p)
		return tok
	}
	withMesh := t.TempDir()
	id := client.GenerateIdentity()
	c := &cli{getenv: func(k string) string { return map[string]string{"MESHCTL_CONFIG_DIR": withMesh}[k] }}
	if err := c.saveConfig(&config{Meshes: []meshIdentity{{MeshID: "m1", MemberID: "x", Slug: "team", Pubkey: id.Pubkey,
		SecretKey: id.SecretHex(), BrokerURL: "ws://127.0.0.1:1/ws"}}}); err != nil {
		t.Fatal(err)
	}
	corrupt := t.TempDir()
	_ = os.WriteFile(filepath.Join(corrupt, "config.json"), []byte("{nope"), 0o600)
	tests := []struct {
		name string
		dir  string
		args []string
		want string
	}{
		{"no_mesh", t.TempDir(), []string{"send", "bob", "hi"}, "you are in no mesh yet"},
		{"unknown_mesh", withMesh, []string{"peers", "--mesh", "other"}, `no identity saved for mesh "other" (you have: team)`},
		{"not_logged_in", t.TempDir(), []string{"mesh", "create", "x"}, "not logged in"},
		{"join_garbage", t.TempDir(), []string{"join", "not a link!"}, "invite"},
		{"join_tampered", t.TempDir(), []string{"join", invite(time.Now().Add(time.Hour), true)}, "signature is invalid"},
		{"join_expired", t.TempDir(), []string{"join", invite(time.Now().Add(-time.Hour), false)}, "the invite expired at"},
		{"join_code_without_broker", t.TempDir(), []string{"join", "ABCD2345"}, "a bare invite code needs a broker"},
		{"status_without_listen", withMesh, []string{"status", "set", "dnd"}, "no `meshctl listen` is running for mesh team"},
		{"broker_unreachable", withMesh, []string{"peers"}, "connect to ws://127.0.0.1:1/ws"},
		{"corrupt_config", corrupt, []string{"peers"}, "is corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runIn(t, tt.dir, tt.args...)
			if code != 1 || !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want 1 and one line with %q", code, errOut, tt.want)
			}
		})
	}
	if out, _, code := runIn(t, t.TempDir(), "mesh", "list"); code != 0 || !strings.Contains(out, "No meshes yet") {
		t.Fatalf("empty mesh list: %d %q", code, out)
	}
}

// keygen writes the secret 0600 and prints only the public key.
func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	out, _, code := runIn(t, dir, "keygen")
	if code != 0 {
		t.Fatal(out)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "keys", "*.key"))
	if len(files) != 1 {
		t.Fatalf("key files %v", files)
	}
	id, err := readKeyFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(files[0])
	if fi.Mode().Perm() != 0o600 || !strings.Contains(out, id.Pubkey) || strings.Contains(out, id.SecretHex()[:64]) {
		t.Fatalf("mode %v output %q", fi.Mode().Perm(), out)
	}
	path := filepath.Join(dir, "mine.key")
	if out, _, code := runIn(t, dir, "keygen", "--out", path, "--json"); code != 0 || !strings.Contains(out, `"path":"`+path+`"`) {
		t.Fatalf("keygen --json: %q", out)
	}
}

func TestHTTPBase(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:7900/ws":       "http://127.0.0.1:7900",
		"wss://mesh.example.com/ws":    "https://mesh.example.com",
		"wss://example.com/mesh/ws":    "https://example.com/mesh",
		"ws://wshost:1/ws?x=1":         "http://wshost:1",
		"https://mesh.example.com/ws/": "https://mesh.example.com",
		"wss://mesh.example.com":       "https://mesh.example.com",
		"ftp://mesh.example.com/ws":    "",
		"mesh.example.com/ws":          "",
	} {
		got, err := httpBase(in)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("httpBase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseCaps(t *testing.T) {
	if caps, err := parseCaps([]string{"none"}, ""); err != nil || caps == nil || len(caps) != 0 {
		t.Fatalf("none: %v %v", caps, err)
	}
	if caps, err := parseCaps([]string{"default"}, ""); err != nil || caps != nil {
		t.Fatalf("default: %v %v", caps, err)
	}
	if caps, err := parseCaps([]string{"dm,broadcast", "read"}, ""); err != nil || strings.Join(caps, " ") != "dm broadcast read" {
		t.Fatalf("list: %v %v", caps, err)
	}
}

// The config file and directory are private.
func TestConfigIsPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cfg")
	c := &cli{getenv: func(k string) string { return map[string]string{"MESHCTL_CONFIG_DIR": dir}[k] }}
	if err := c.saveConfig(&config{Token: "t"}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "config.json"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v %v", path, fi.Mode().Perm(), err)
		}
	}
}

// The cobra tree: version, completion scripts, group help, suggestions,
// examples in help, whoami without secrets.
func TestCLITree(t *testing.T) {
	dir := t.TempDir()
	if out, _, code := runIn(t, dir, "version"); code != 0 || !strings.HasPrefix(out, "meshctl dev (") {
		t.Fatalf("version: %d %q", code, out)
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if out, _, code := runIn(t, dir, "completion", sh); code != 0 || !strings.Contains(out, "meshctl") || len(out) < 500 {
			t.Fatalf("completion %s: %d %d bytes", sh, code, len(out))
		}
	}
	if out, _, code := runIn(t, dir, "mesh", "--help"); code != 0 || !strings.Contains(out, "create") || !strings.Contains(out, "delete") {
		t.Fatalf("mesh --help: %d %q", code, out)
	}
	if _, errOut, code := runIn(t, dir, "mesh", "crate"); code != 2 || !strings.Contains(errOut, "did you mean create?") {
		t.Fatalf("mesh crate: %d %q", code, errOut)
	}
	if _, errOut, code := runIn(t, dir, "sned"); code != 2 || !strings.Contains(errOut, "did you mean send?") {
		t.Fatalf("sned: %d %q", code, errOut)
	}
	if out, _, code := runIn(t, dir, "send", "--help"); code != 0 || !strings.Contains(out, "examples:\n  meshctl send bob") || strings.Contains(out, "-token meshd") {
		t.Fatalf("send --help: %d %q", code, out)
	}
	if out, _, code := runIn(t, dir, "login", "--help"); code != 0 || !strings.Contains(out, "  --token TOKEN\n      bearer token from `meshd token create --user <you>`") {
		t.Fatalf("login --help shows a bogus placeholder: %q", out)
	}
	if out, _, code := runIn(t, dir, "whoami"); code != 0 || !strings.Contains(out, "Not logged in") || !strings.Contains(out, "In no mesh yet") {
		t.Fatalf("whoami: %d %q", code, out)
	}
}

// listen's lines name a topic post's topic and the message a reply answers,
// for humans and in --json.
func TestPushLinesShowTopicAndReply(t *testing.T) {
	at := func() time.Time { return time.Date(2026, 12, 1, 18, 4, 5, 0, time.UTC) }
	msgs := []client.Message{
		{Push: wire.Push{MessageID: "m1", SenderName: "ann", Topic: "ops", BodyVersion: 1}, Plaintext: []byte("deploy at noon")},
		{Push: wire.Push{MessageID: "m2", SenderName: "ann", ReplyToID: "m0"}, Plaintext: []byte("yes"), Encrypted: true},
	}
	var human, js bytes.Buffer
	hp, jp := newPushPrinter(&human, "team", false), newPushPrinter(&js, "team", true)
	hp.now = at
	for _, m := range msgs {
		hp.print(m)
		jp.print(m)
	}
	if want := "18:04:05 [#ops] ann: deploy at noon\n18:04:05 [dm] ann: yes (reply to m0)\n"; human.String() != want {
		t.Fatalf("human %q, want %q", human.String(), want)
	}
	if !strings.Contains(js.String(), `"id":"m1"`) || !strings.Contains(js.String(), `"topic":"ops"`) ||
		!strings.Contains(js.String(), `"replyToId":"m0"`) {
		t.Fatalf("json %s", js.String())
	}
}
