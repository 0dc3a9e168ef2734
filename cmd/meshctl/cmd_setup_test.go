package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runEnv runs meshctl in-process with exactly env.
func runEnv(env map[string]string, stdin string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

// `setup claude --user --write` on a HOME with existing files keeps their
// other keys, is idempotent, and --remove takes out exactly its entries.
func TestSetupClaudeUser(t *testing.T) {
	home := t.TempDir()
	env := map[string]string{"HOME": home}
	settings := filepath.Join(home, ".claude", "settings.json")
	claudeJSON := filepath.Join(home, ".claude.json")
	if err := os.MkdirAll(filepath.Dir(settings), 0o755); err != nil {
		t.Fatal(err)
	}
	other := `{"model": "opus", "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "say done"}]}]}}`
	if err := os.WriteFile(settings, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(claudeJSON, []byte(`{"numStartups": 7, "mcpServers": {"other": {"command": "x"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	out, _, code := runEnv(env, "", "setup", "claude", "--user")
	if code != 0 || !strings.Contains(out, "# merge into "+claudeJSON) || !strings.Contains(out, `"UserPromptSubmit"`) {
		t.Fatalf("print: %d %s", code, out)
	}
	if b, _ := os.ReadFile(settings); string(b) != other {
		t.Fatalf("printing wrote the file: %s", b)
	}

	out, errOut, code := runEnv(env, "", "setup", "claude", "--user", "--write")
	if code != 0 || !strings.Contains(out, settings+": updated") {
		t.Fatalf("write: %d %s %s", code, out, errOut)
	}
	first := map[string][]byte{}
	for _, p := range []string{settings, claudeJSON} {
		first[p], _ = os.ReadFile(p)
	}
	var s struct {
		Model string
		Hooks map[string][]struct {
			Hooks []struct{ Type, Command string }
		}
	}
	if err := json.Unmarshal(first[settings], &s); err != nil {
		t.Fatal(err)
	}
	if s.Model != "opus" || len(s.Hooks["Stop"]) != 2 || s.Hooks["Stop"][0].Hooks[0].Command != "say done" ||
		!strings.HasSuffix(s.Hooks["Stop"][1].Hooks[0].Command, " hook idle") ||
		!strings.HasSuffix(s.Hooks["UserPromptSubmit"][0].Hooks[0].Command, " hook working") {
		t.Fatalf("settings.json:\n%s", first[settings])
	}
	var cj struct {
		NumStartups int
		MCPServers  map[string]struct {
			Type, Command string
			Args          []string
		}
	}
	if err := json.Unmarshal(first[claudeJSON], &cj); err != nil {
		t.Fatal(err)
	}
	if cj.NumStartups != 7 || cj.MCPServers["other"].Command != "x" || cj.MCPServers["meshd"].Type != "stdio" ||
		strings.Join(cj.MCPServers["meshd"].Args, " ") != "mcp" {
		t.Fatalf(".claude.json:\n%s", first[claudeJSON])
	}
	if fi, _ := os.Stat(claudeJSON); fi.Mode().Perm() != 0o600 {
		t.Fatalf(".claude.json mode %v", fi.Mode().Perm())
	}

	out, _, code = runEnv(env, "", "setup", "claude", "--user", "--write")
	if code != 0 || strings.Contains(out, "updated") {
		t.Fatalf("second write: %d %s", code, out)
	}
	for p, b := range first {
		if now, _ := os.ReadFile(p); !bytes.Equal(now, b) {
			t.Fatalf("%s changed on the second run:\n%s\n---\n%s", p, b, now)
		}
	}

	if _, _, code = runEnv(env, "", "setup", "claude", "--user", "--remove"); code != 0 {
		t.Fatalf("remove: %d", code)
	}
	b, _ := os.ReadFile(settings)
	if strings.Contains(string(b), "meshctl") || !strings.Contains(string(b), "say done") || !strings.Contains(string(b), "opus") {
		t.Fatalf("settings after remove:\n%s", b)
	}
	b, _ = os.ReadFile(claudeJSON)
	if strings.Contains(string(b), "meshd") || !strings.Contains(string(b), `"other"`) {
		t.Fatalf(".claude.json after remove:\n%s", b)
	}
}

// The project form writes .mcp.json and .claude/settings.json, approving
// the server, and pins --mesh and the config directory.
func TestSetupClaudeProject(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"HOME": t.TempDir(), "MESHCTL_CONFIG_DIR": "/tmp/my cfg"}
	if _, errOut, code := runEnv(env, "", "setup", "claude", "--write", "--dir", dir, "--mesh", "team"); code != 0 {
		t.Fatalf("%d %s", code, errOut)
	}
	mcpJSON, _ := os.ReadFile(filepath.Join(dir, ".mcp.json"))
	settings, _ := os.ReadFile(filepath.Join(dir, ".claude", "settings.json"))
	if !strings.Contains(string(mcpJSON), `"--mesh",`) || !strings.Contains(string(mcpJSON), `"MESHCTL_CONFIG_DIR": "/tmp/my cfg"`) ||
		!strings.Contains(string(settings), `"enabledMcpjsonServers": [`) || !strings.Contains(string(settings), `MESHCTL_CONFIG_DIR='/tmp/my cfg' `) {
		t.Fatalf(".mcp.json:\n%s\nsettings:\n%s", mcpJSON, settings)
	}
}

// `meshctl hook` never fails the hook: a dead broker, a bad argument or
// bad stdin print to stderr, exit 0, within its 1 s budget.
func TestHookNeverFails(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t) // nothing listens there
	cfg := config{Meshes: []meshIdentity{{MeshID: "m", Slug: "s", BrokerURL: fmt.Sprintf("ws://127.0.0.1:%d/ws", port)}}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MESHCTL_CONFIG_DIR": dir}
	for _, tt := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"hook", "working"}, `{"cwd":"/x","session_id":"s1"}`, "connection refused"},
		{[]string{"hook", "sleeping"}, "", "status must be working or idle"},
		{[]string{"hook"}, "", "hook takes 1 argument"},
		{[]string{"hook", "--verbose", "idle"}, "", "meshctl hook: unknown flag: --verbose"},
		{[]string{"hook", "idle"}, "not json", "not Claude Code's hook JSON"},
	} {
		start := time.Now()
		_, errOut, code := runEnv(env, tt.stdin, tt.args...)
		if code != 0 || !strings.Contains(errOut, tt.want) || time.Since(start) > 2*time.Second {
			t.Errorf("%v: exit %d after %v, stderr %q; want 0 and %q", tt.args, code, time.Since(start), errOut, tt.want)
		}
	}
}
