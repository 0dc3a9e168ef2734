package claudepath

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/meshd/meshd"
)

// The five examples of B.13 (exact output, in order).
func TestProjectKeyCandidatesExamples(t *testing.T) {
	tests := []struct {
		cwd  string
		want []string
	}{
		{"/Users/x/foo", []string{"-Users-x-foo"}},
		{`H:\Claude`, []string{"H--Claude", `H:\Claude`, "H:-Claude", "-Claude", "-H--Claude", `-H:\Claude`, "-H:-Claude"}},
		{"C:/Users/x", []string{"C--Users-x", "C:-Users-x", "-Users-x", "-C--Users-x", "-C:-Users-x"}},
		{"project/foo", []string{"project-foo", "-project-foo"}},
		{"/home/alice/my:dir", []string{"-home-alice-my-dir", "-home-alice-my:dir"}},
		{"", nil},
		{"C:", []string{"C-", "C:", "-C-", "-C:"}},
	}
	for _, tt := range tests {
		t.Run(tt.cwd, func(t *testing.T) {
			if got := ProjectKeyCandidates(tt.cwd); !slices.Equal(got, tt.want) {
				t.Fatalf("ProjectKeyCandidates(%q) = %q, want %q", tt.cwd, got, tt.want)
			}
		})
	}
}

// The seven cases of upstream's encoding.test.ts (B.17).
func TestProjectKeyCandidatesUpstream(t *testing.T) {
	tests := []struct {
		name    string
		cwd     string
		first   string   // the first candidate, when set
		include []string // candidates that must be present
	}{
		{name: "macos_first", cwd: "/Users/agutierrez/Desktop/foo", first: "-Users-agutierrez-Desktop-foo"},
		{name: "linux_first", cwd: "/home/alice/project", first: "-home-alice-project"},
		{name: "windows_drive_first", cwd: `H:\Claude`, first: "H--Claude"},
		{name: "windows_nested_first", cwd: `C:\Users\Alice\dev\myapp`, first: "C--Users-Alice-dev-myapp"},
		{name: "no_duplicates", cwd: `C:\Users\Alice\dev\myapp`},
		{name: "drive_stripped_included", cwd: `C:\Users\Alice`, include: []string{"-Users-Alice"}},
		{name: "relative_both_forms", cwd: "project/foo", include: []string{"project-foo", "-project-foo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ProjectKeyCandidates(tt.cwd)
			if len(got) == 0 {
				t.Fatal("no candidates")
			}
			if tt.first != "" && got[0] != tt.first {
				t.Fatalf("first candidate %q, want %q (all %q)", got[0], tt.first, got)
			}
			for _, w := range tt.include {
				if !slices.Contains(got, w) {
					t.Fatalf("%q missing from %q", w, got)
				}
			}
			if dup := duplicate(got); dup != "" {
				t.Fatalf("duplicate %q in %q", dup, got)
			}
		})
	}
}

func duplicate(keys []string) string {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k] {
			return k
		}
		seen[k] = true
	}
	return ""
}

// Properties that hold for any cwd: no empty or duplicate key, no slash
// (so a key is one path element), the native rule first, at most 8 keys,
// and every key without a leading dash has its dashed twin after it.
func FuzzProjectKeyCandidates(f *testing.F) {
	for _, seed := range []string{"/Users/x/foo", `H:\Claude`, "C:/Users/x", "project/foo", "/home/alice/my:dir",
		`C:\Users\Alice\dev\myapp`, "", "C:", "-", "..", `\\server\share`, "z:relative", "/a//b/"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, cwd string) {
		got := ProjectKeyCandidates(cwd)
		if len(got) > 8 {
			t.Fatalf("%d candidates: %q", len(got), got)
		}
		if dup := duplicate(got); dup != "" {
			t.Fatalf("duplicate %q in %q", dup, got)
		}
		native := strings.NewReplacer(`\`, "-", "/", "-", ":", "-").Replace(cwd)
		if cwd != "" && (len(got) == 0 || got[0] != native) {
			t.Fatalf("first of %q is not the native key %q", got, native)
		}
		for i, k := range got {
			if k == "" || strings.Contains(k, "/") {
				t.Fatalf("bad key %q in %q", k, got)
			}
			if !strings.HasPrefix(k, "-") && !slices.Contains(got[i+1:], "-"+k) {
				t.Fatalf("%q has no dashed twin after it in %q", k, got)
			}
		}
	})
}

// writeFile creates path (and its directory) with content and mtime.
func writeFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestFindActiveJSONL(t *testing.T) {
	t0 := time.Now().Add(-time.Hour)
	tests := []struct {
		name  string
		cwd   string
		files map[string]time.Time // relative to the projects dir
		want  string               // relative; "" = none
	}{
		{"none_without_dir", "/home/a/p", nil, ""},
		{"newest_by_mtime", "/home/a/p", map[string]time.Time{
			"-home-a-p/old.jsonl": t0, "-home-a-p/new.jsonl": t0.Add(time.Minute), "-home-a-p/z.jsonl": t0.Add(-time.Minute),
		}, "-home-a-p/new.jsonl"},
		{"non_jsonl_ignored", "/home/a/p", map[string]time.Time{
			"-home-a-p/notes.txt": t0.Add(time.Hour), "-home-a-p/s.jsonl": t0,
		}, "-home-a-p/s.jsonl"},
		{"empty_first_candidate_skipped", `C:\Users\x`, map[string]time.Time{
			"C--Users-x/readme.md": t0, "-Users-x/s.jsonl": t0,
		}, "-Users-x/s.jsonl"},
		{"first_candidate_wins_over_newer_later", `C:\Users\x`, map[string]time.Time{
			"C--Users-x/a.jsonl": t0, "-C--Users-x/b.jsonl": t0.Add(time.Hour),
		}, "C--Users-x/a.jsonl"},
		{"dotdot_never_escapes", "..", map[string]time.Time{"../escape.jsonl": t0, "-../x.jsonl": t0}, "-../x.jsonl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "projects")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for rel, mt := range tt.files {
				writeFile(t, filepath.Join(dir, rel), "{}\n", mt)
			}
			got, ok := FindActiveJSONL(dir, tt.cwd)
			if tt.want == "" {
				if ok {
					t.Fatalf("found %s, want none", got)
				}
				return
			}
			if !ok || got != filepath.Join(dir, tt.want) {
				t.Fatalf("FindActiveJSONL = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

const (
	userLine      = `{"type":"user","message":{"role":"user","content":"do it"}}`
	assistantText = `{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"done"}]}}`
	assistantTool = `{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"running"},{"type":"tool_use","id":"t1","name":"Bash","input":{}}]}}`
	toolResult    = `{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}`
)

func TestInferStatus(t *testing.T) {
	big := `{"type":"assistant","message":{"content":[{"type":"tool_use","input":"` + strings.Repeat("x", 2*tailBytes) + `"}]}}`
	tests := []struct {
		name  string
		lines []string
		want  meshd.Status
	}{
		{"empty_file_idle", nil, meshd.StatusIdle},
		{"no_assistant_idle", []string{userLine}, meshd.StatusIdle},
		{"last_assistant_text_idle", []string{assistantTool, toolResult, assistantText}, meshd.StatusIdle},
		{"last_assistant_tool_use_working", []string{userLine, assistantText, assistantTool}, meshd.StatusWorking},
		{"tool_use_then_user_lines_working", []string{assistantTool, toolResult, userLine}, meshd.StatusWorking},
		{"string_content_idle", []string{assistantTool, `{"type":"assistant","message":{"content":"plain"}}`}, meshd.StatusIdle},
		{"garbage_lines_skipped", []string{assistantTool, "not json", "{"}, meshd.StatusWorking},
		{"trailing_newlines", []string{assistantTool, "", ""}, meshd.StatusWorking},
		// Only the last 8192 bytes count: a tool_use entry cut by the
		// window does not parse and is skipped…
		{"cut_tool_use_entry_skipped", []string{assistantText, big, userLine}, meshd.StatusIdle},
		// …and an assistant entry entirely before the window is not seen.
		{"assistant_before_window_idle", []string{assistantTool, strings.Repeat(userLine+"\n", tailBytes/len(userLine)+1)}, meshd.StatusIdle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "s.jsonl")
			content := strings.Join(tt.lines, "\n")
			if len(tt.lines) > 0 {
				content += "\n"
			}
			writeFile(t, path, content, time.Now())
			got, err := InferStatus(path)
			if err != nil || got != tt.want {
				t.Fatalf("InferStatus = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := InferStatus(filepath.Join(t.TempDir(), "missing.jsonl")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestStatusForCWD(t *testing.T) {
	dir := t.TempDir()
	if st, err := StatusForCWD(dir, "/home/a/p"); err != nil || st != meshd.StatusIdle {
		t.Fatalf("no transcript: %q, %v; want idle", st, err)
	}
	writeFile(t, filepath.Join(dir, "-home-a-p", "old.jsonl"), assistantText+"\n", time.Now().Add(-time.Minute))
	writeFile(t, filepath.Join(dir, "-home-a-p", "new.jsonl"), assistantTool+"\n", time.Now())
	if st, err := StatusForCWD(dir, "/home/a/p"); err != nil || st != meshd.StatusWorking {
		t.Fatalf("newest transcript working: %q, %v", st, err)
	}
}
