package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/spf13/pflag"
)

// hookTimeout is the whole budget of `meshctl hook`: Claude Code waits for
// its hooks, so a dead broker must not slow the conversation (PROTOCOL.md
// B.6.4: the CLI hook is fire-and-forget with a 1 s timeout).
const hookTimeout = time.Second

// hookInput is the part of Claude Code's hook JSON (on stdin) we use.
type hookInput struct {
	CWD       string `json:"cwd"`
	SessionID string `json:"session_id"`
}

// runHook reports this Claude Code session's status to every broker in
// the config: POST /hook/set-status {cwd, pid: parent pid, status,
// session_id}. The broker matches the presence of the `meshctl mcp` that
// the same Claude Code process started (same pid and cwd). It never fails
// the hook: problems go to stderr and the exit status is 0.
func runHook(c *cli, fs *pflag.FlagSet) runFunc {
	return func(pos []string) error {
		if len(pos) != 1 {
			fmt.Fprintf(c.stderr, "meshctl hook: hook takes 1 argument (working or idle), got %d\n", len(pos))
			return nil
		}
		if pos[0] != "working" && pos[0] != "idle" {
			fmt.Fprintf(c.stderr, "meshctl hook: status must be working or idle, not %q\n", pos[0])
			return nil
		}
		ctx, cancel := context.WithTimeout(c.ctx, hookTimeout)
		defer cancel()
		in := c.readHookInput(ctx)
		if in.CWD == "" {
			in.CWD, _ = os.Getwd()
		}
		bases, err := c.hookBrokers()
		if err != nil {
			fmt.Fprintf(c.stderr, "meshctl hook: %v\n", err)
			return nil
		}
		body, _ := json.Marshal(map[string]any{"cwd": in.CWD, "pid": os.Getppid(), "status": pos[0], "session_id": in.SessionID})
		var wg sync.WaitGroup
		for _, base := range bases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := postHook(ctx, base, body); err != nil {
					fmt.Fprintf(c.stderr, "meshctl hook: %s: %v\n", base, err)
				}
			}()
		}
		wg.Wait()
		return nil
	}
}

// readHookInput decodes stdin, giving up at the deadline: Claude Code
// closes stdin after writing, a terminal does not.
func (c *cli) readHookInput(ctx context.Context) hookInput {
	done := make(chan hookInput, 1)
	go func() {
		var in hookInput
		b, _ := io.ReadAll(io.LimitReader(c.stdin, 1<<20))
		if len(bytes.TrimSpace(b)) > 0 {
			if err := json.Unmarshal(b, &in); err != nil {
				fmt.Fprintf(c.stderr, "meshctl hook: stdin is not Claude Code's hook JSON: %v\n", err)
			}
		}
		done <- in
	}()
	select {
	case in := <-done:
		return in
	case <-time.After(hookTimeout / 4):
		return hookInput{}
	case <-ctx.Done():
		return hookInput{}
	}
}

// hookBrokers returns the HTTP base of every distinct broker in the config.
func (c *cli) hookBrokers() ([]string, error) {
	cfg, err := c.loadConfig()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, m := range cfg.Meshes {
		if base, err := httpBase(m.BrokerURL); err == nil {
			seen[base] = true
		}
	}
	out := make([]string, 0, len(seen))
	for b := range seen {
		out = append(out, b)
	}
	sort.Strings(out)
	return out, nil
}

func postHook(ctx context.Context, base string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/hook/set-status", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return unwrapURLError(err)
	}
	defer resp.Body.Close()
	var r struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(&r)
	if resp.StatusCode != http.StatusOK || !r.OK {
		return fmt.Errorf("answered %d %s", resp.StatusCode, r.Error)
	}
	return nil
}
