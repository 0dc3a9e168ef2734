package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// `meshctl setup claude` wires meshctl into Claude Code: the MCP server
// entry (`meshctl mcp`) and the hooks UserPromptSubmit → `meshctl hook
// working`, Stop → `meshctl hook idle`. Claude Code reads MCP servers from
// .mcp.json (project) or ~/.claude.json (user) and hooks from
// .claude/settings.json or ~/.claude/settings.json. Merging keeps every
// other key; running it twice changes nothing; --remove takes out exactly
// what it adds.

const mcpServerName = "meshd"

// setupFile is one file setup touches and how.
type setupFile struct {
	path  string
	mode  os.FileMode // for a new file
	apply func(doc map[string]any, remove bool)
}

func runSetupClaude(c *cli, fs *pflag.FlagSet) runFunc {
	write := fs.Bool("write", false, "merge the settings into the files (default: print them)")
	remove := fs.Bool("remove", false, "take meshctl's entries out of the files again")
	user := fs.Bool("user", false, "for every project: ~/.claude.json and ~/.claude/settings.json (default: this project)")
	dir := fs.String("dir", "", "the project directory (default: the current directory)")
	mesh := fs.String("mesh", "", "pin the MCP server to this mesh (default: $MESHCTL_MESH, else your only mesh)")
	return func([]string) error {
		files, err := c.setupFiles(*user, *dir, *mesh)
		if err != nil {
			return err
		}
		for _, f := range files {
			if !*write && !*remove {
				doc := map[string]any{}
				f.apply(doc, false)
				b, _ := json.MarshalIndent(doc, "", "  ")
				fmt.Fprintf(c.stdout, "# merge into %s\n%s\n\n", f.path, b)
				continue
			}
			changed, err := mergeJSONFile(f.path, f.mode, func(doc map[string]any) { f.apply(doc, *remove) })
			if err != nil {
				return err
			}
			state := "unchanged"
			if changed {
				state = "updated"
			}
			fmt.Fprintf(c.stdout, "%s: %s\n", f.path, state)
		}
		switch {
		case *remove:
			fmt.Fprintln(c.stdout, "meshctl is no longer wired into Claude Code there; restart Claude Code.")
		case *write:
			fmt.Fprintln(c.stdout, "Done. Restart Claude Code; for live message push start it with --dangerously-load-development-channels server:meshd (docs/mcp.md).")
		default:
			fmt.Fprintln(c.stdout, "Run with --write to merge these (other keys are kept), --remove to undo.")
		}
		return nil
	}
}

// setupFiles describes the files of a project or of the user.
func (c *cli) setupFiles(user bool, dir, mesh string) ([]setupFile, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the meshctl binary: %w", err)
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return nil, err
	}
	server := map[string]any{"type": "stdio", "command": exe, "args": mcpArgs(mesh)}
	hookCmd := exe
	if d := c.getenv("MESHCTL_CONFIG_DIR"); d != "" {
		server["env"] = map[string]any{"MESHCTL_CONFIG_DIR": d}
		hookCmd = "MESHCTL_CONFIG_DIR=" + shellQuote(d) + " " + shellQuote(exe)
	} else {
		hookCmd = shellQuote(exe)
	}
	hooks := func(doc map[string]any, remove bool) {
		mergeHook(doc, "UserPromptSubmit", hookCmd+" hook working", remove)
		mergeHook(doc, "Stop", hookCmd+" hook idle", remove)
	}
	if user {
		home := c.getenv("HOME")
		if home == "" {
			return nil, errors.New("HOME is not set")
		}
		return []setupFile{
			{filepath.Join(home, ".claude.json"), 0o600, func(doc map[string]any, remove bool) { mergeServer(doc, server, remove) }},
			{filepath.Join(home, ".claude", "settings.json"), 0o644, hooks},
		}, nil
	}
	if dir == "" {
		if dir, err = os.Getwd(); err != nil {
			return nil, err
		}
	}
	return []setupFile{
		{filepath.Join(dir, ".mcp.json"), 0o644, func(doc map[string]any, remove bool) { mergeServer(doc, server, remove) }},
		{filepath.Join(dir, ".claude", "settings.json"), 0o644, func(doc map[string]any, remove bool) {
			hooks(doc, remove)
			mergeList(doc, "enabledMcpjsonServers", mcpServerName, remove) // approve the project's server
		}},
	}, nil
}

func mcpArgs(mesh string) []any {
	if mesh == "" {
		return []any{"mcp"}
	}
	return []any{"mcp", "--mesh", mesh}
}

// mergeServer sets or removes mcpServers.meshd.
func mergeServer(doc map[string]any, server map[string]any, remove bool) {
	servers, _ := doc["mcpServers"].(map[string]any)
	if remove {
		if servers != nil {
			delete(servers, mcpServerName)
			if len(servers) == 0 {
				delete(doc, "mcpServers")
			}
		}
		return
	}
	if servers == nil {
		servers = map[string]any{}
		doc["mcpServers"] = servers
	}
	servers[mcpServerName] = server
}

// mergeHook adds (once) or removes our command hook for event. Ours are
// recognised by the `hook working` / `hook idle` command of a meshctl.
func mergeHook(doc map[string]any, event, command string, remove bool) {
	hooks, _ := doc["hooks"].(map[string]any)
	if hooks == nil {
		if remove {
			return
		}
		hooks = map[string]any{}
		doc["hooks"] = hooks
	}
	groups, _ := hooks[event].([]any)
	kept := []any{}
	for _, g := range groups {
		gm, ok := g.(map[string]any)
		if !ok || !isOurHookGroup(gm) {
			kept = append(kept, g)
		}
	}
	if !remove {
		kept = append(kept, map[string]any{"hooks": []any{map[string]any{"type": "command", "command": command, "timeout": 5}}})
	}
	switch {
	case len(kept) > 0:
		hooks[event] = kept
	default:
		delete(hooks, event)
	}
	if len(hooks) == 0 {
		delete(doc, "hooks")
	}
}

func isOurHookGroup(g map[string]any) bool {
	list, _ := g["hooks"].([]any)
	if len(list) != 1 {
		return false
	}
	h, _ := list[0].(map[string]any)
	cmd, _ := h["command"].(string)
	return strings.Contains(cmd, "meshctl") && (strings.HasSuffix(cmd, " hook working") || strings.HasSuffix(cmd, " hook idle"))
}

// mergeList adds or removes value in the string list doc[key].
func mergeList(doc map[string]any, key, value string, remove bool) {
	list, _ := doc[key].([]any)
	out := []any{}
	for _, v := range list {
		if v != value {
			out = append(out, v)
		}
	}
	if !remove {
		out = append(out, value)
	}
	if len(out) == 0 {
		delete(doc, key)
		return
	}
	doc[key] = out
}

// mergeJSONFile applies edit to the JSON object in path (a missing file is
// {}) and writes it back atomically, keeping the file's mode, when it
// changed. A file that is not a JSON object is left alone with an error.
func mergeJSONFile(path string, mode os.FileMode, edit func(map[string]any)) (bool, error) {
	old, err := os.ReadFile(path)
	doc := map[string]any{}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return false, fmt.Errorf("read %s: %w", path, err)
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
		if len(bytes.TrimSpace(old)) > 0 {
			if err := json.Unmarshal(old, &doc); err != nil || doc == nil {
				return false, fmt.Errorf("%s is not a JSON object; fix or move it first", path)
			}
		}
	}
	edit(doc)
	if old == nil && len(doc) == 0 {
		return false, nil
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return false, err
	}
	b = append(b, '\n')
	if bytes.Equal(b, old) {
		return false, nil
	}
	return true, writeFileAtomic(path, b, mode, 0o755)
}

// shellQuote quotes s for sh when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !slices.Contains([]rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:@"), r)
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
