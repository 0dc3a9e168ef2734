// Package claudepath maps a Claude Code working directory to its transcript
// directory under ~/.claude/projects and infers a session's status from its
// newest JSONL transcript (docs/protocol.md B.6.3, B.13). It owns no resource: it
// only reads files below the projects directory it is given, and only makes
// sense on a broker that runs on the same host as the sessions (a remote
// broker never sees a transcript, JSONL_STATUS_DIR unset).
package claudepath

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshd/meshd"
)

// tailBytes is how much of a transcript's end InferStatus reads (B.6.3):
// enough for the last few entries, bounded so a multi-megabyte transcript
// costs one small read at every drain.
const tailBytes = 8192

// ProjectKeyCandidates returns the project-directory names Claude Code may
// have used for cwd, in the order upstream's cwdToProjectKeyCandidates tries
// them (B.13), de-duplicated, empty strings skipped:
//  1. `\`, `/` and `:` replaced by `-` (the native rule);
//  2. only `/` replaced;
//  3. `\` and `/` replaced (colons kept);
//  4. a leading drive prefix `[A-Za-z]:` removed, then `\` and `/` replaced;
//  5. each key so far that does not start with `-`, with `-` prefixed.
//
// Like upstream it does not model Claude Code's mapping of `.` and other
// characters to `-`.
func ProjectKeyCandidates(cwd string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(k string) {
		if k != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	add(strings.NewReplacer(`\`, "-", "/", "-", ":", "-").Replace(cwd))
	add(strings.ReplaceAll(cwd, "/", "-"))
	slashes := strings.NewReplacer(`\`, "-", "/", "-")
	add(slashes.Replace(cwd))
	add(slashes.Replace(stripDrive(cwd)))
	for _, k := range out {
		if !strings.HasPrefix(k, "-") {
			add("-" + k)
		}
	}
	return out
}

// stripDrive removes a leading Windows drive prefix such as "C:".
func stripDrive(p string) string {
	if len(p) >= 2 && p[1] == ':' && ('a' <= p[0] && p[0] <= 'z' || 'A' <= p[0] && p[0] <= 'Z') {
		return p[2:]
	}
	return p
}

// FindActiveJSONL returns the newest *.jsonl (by modification time; the
// name breaks ties) in the first candidate directory of cwd under
// projectsDir that holds at least one (B.13 findActiveJsonl). Keys "." and
// ".." are skipped so a hostile cwd cannot leave projectsDir; no key
// contains a slash.
func FindActiveJSONL(projectsDir, cwd string) (path string, ok bool) {
	for _, key := range ProjectKeyCandidates(cwd) {
		if key == "." || key == ".." {
			continue
		}
		if p, ok := newestJSONL(filepath.Join(projectsDir, key)); ok {
			return p, true
		}
	}
	return "", false
}

func newestJSONL(dir string) (string, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	var best string
	var bestMod time.Time
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".jsonl") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if best == "" || info.ModTime().After(bestMod) || info.ModTime().Equal(bestMod) && e.Name() > best {
			best, bestMod = e.Name(), info.ModTime()
		}
	}
	if best == "" {
		return "", false
	}
	return filepath.Join(dir, best), true
}

// entry is the part of a transcript line InferStatus looks at.
type entry struct {
	Type    string `json:"type"`
	Message struct {
		Content json.RawMessage `json:"content"`
	} `json:"message"`
}

// InferStatus reads the last 8192 bytes of the transcript at path and
// returns working when the last assistant entry there has a tool_use
// content item (a tool is running), else idle; no assistant entry in the
// window is idle too (B.6.3). Lines that are not JSON, including a line cut
// by the window, are skipped. Only I/O errors are returned.
func InferStatus(path string) (meshd.Status, error) {
	tail, err := readTail(path, tailBytes)
	if err != nil {
		return "", fmt.Errorf("claudepath: infer status: %w", err)
	}
	lines := bytes.Split(tail, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		var e entry
		if json.Unmarshal(lines[i], &e) != nil || e.Type != "assistant" {
			continue
		}
		if hasToolUse(e.Message.Content) {
			return meshd.StatusWorking, nil
		}
		return meshd.StatusIdle, nil
	}
	return meshd.StatusIdle, nil
}

// StatusForCWD is the JSONL inference of B.6.3 for a session in cwd: the
// status inferred from its newest transcript under projectsDir, idle when
// there is none.
func StatusForCWD(projectsDir, cwd string) (meshd.Status, error) {
	path, ok := FindActiveJSONL(projectsDir, cwd)
	if !ok {
		return meshd.StatusIdle, nil
	}
	st, err := InferStatus(path)
	if errors.Is(err, fs.ErrNotExist) { // rotated away since the directory scan
		return meshd.StatusIdle, nil
	}
	return st, err
}

func hasToolUse(content json.RawMessage) bool {
	var items []struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(content, &items) != nil { // a plain string, or absent
		return false
	}
	for _, it := range items {
		if it.Type == "tool_use" {
			return true
		}
	}
	return false
}

// readTail returns the last n bytes of the file at path (all of it when
// shorter).
func readTail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(info.Size()-n, 0)
	return io.ReadAll(io.NewSectionReader(f, off, info.Size()-off))
}
