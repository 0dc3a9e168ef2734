package collab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/meshd/meshd"
)

// Limits on free-form fields. The frame cap (MAX_MESSAGE_BYTES, 64 KiB by
// default) bounds text; these bound what becomes rows and index entries.
const (
	maxTags      = 32  // tags per memory, task, context or skill
	maxTagLen    = 128 // bytes per tag
	maxNameLen   = 128 // topic, skill, webhook and vault key names
	maxQueryLen  = 1024
	recallLimit  = 20 // E.4: top 20, as upstream
	contextLimit = 20 // E.7 get_context
	taskLimit    = 100
)

func iso(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func isoOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return iso(*t)
}

// orUnknown is upstream's fallback author or peer name.
func orUnknown(name string) string {
	if name == "" {
		return "unknown"
	}
	return name
}

// checkQuery bounds a search string.
func checkQuery(q string) error {
	if len(q) > maxQueryLen {
		return invalidArgs(fmt.Sprintf("query longer than %d bytes", maxQueryLen))
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// checkTags validates a tag list (nil is fine).
func checkTags(field string, tags []string) error {
	if len(tags) > maxTags {
		return invalidArgs(fmt.Sprintf("%s: at most %d entries", field, maxTags))
	}
	for _, t := range tags {
		if t == "" || len(t) > maxTagLen || !utf8.ValidString(t) {
			return invalidArgs(fmt.Sprintf("%s: each entry must be 1-%d bytes of text", field, maxTagLen))
		}
	}
	return nil
}

// checkName validates an identifier-like name: 1-128 bytes, no control
// characters, not only spaces.
func checkName(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return invalidArgs(field + " is required")
	}
	if len(s) > maxNameLen {
		return invalidArgs(fmt.Sprintf("%s longer than %d bytes", field, maxNameLen))
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return invalidArgs(field + " must not contain control characters")
		}
	}
	return nil
}

func (h *Handler) remember(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Content *string  `json:"content"`
		Tags    []string `json:"tags"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if m.Content == nil || strings.TrimSpace(*m.Content) == "" {
		return nil, invalidArgs("content is required")
	}
	if err := checkTags("tags", m.Tags); err != nil {
		return nil, err
	}
	mem := Memory{Content: *m.Content, Tags: nonNil(m.Tags), AuthorID: p.MemberID, AuthorName: p.MemberName}
	if err := h.st.Remember(ctx, p.MeshID, &mem); err != nil {
		return nil, err
	}
	// Both id (legacy client) and memoryId (daemon), E.4.
	f := newFrame("memory_stored", req)
	f["id"], f["memoryId"] = mem.ID, mem.ID
	return []any{f}, nil
}

func (h *Handler) recall(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Query string `json:"query"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if err := checkQuery(m.Query); err != nil {
		return nil, err
	}
	rows, err := h.st.Recall(ctx, p.MeshID, m.Query, recallLimit)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(rows))
	for _, r := range rows {
		out = append(out, map[string]any{"id": r.ID, "content": r.Content, "tags": nonNil(r.Tags),
			"rememberedBy": orUnknown(r.AuthorName), "rememberedAt": iso(r.RememberedAt)})
	}
	// The legacy client reads memory_results.memories, the daemon
	// memory_recall_result.matches; each ignores the other (E.4).
	a := newFrame("memory_results", req)
	a["memories"] = out
	b := newFrame("memory_recall_result", req)
	b["matches"] = out
	return []any{a, b}, nil
}

func (h *Handler) forget(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		MemoryID string `json:"memoryId"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if m.MemoryID == "" {
		return nil, invalidArgs("memoryId is required")
	}
	err := h.st.Forget(ctx, p.MeshID, m.MemoryID, p.MemberID, p.Admin)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		return nil, reject("not_found", "no live memory with this id in the mesh")
	case errors.Is(err, ErrForbidden):
		return nil, reject("forbidden", "only the author or a mesh admin can forget a memory")
	case err != nil:
		return nil, err
	}
	// The forgotten id goes in messageId only: id is the send correlation
	// field (E.14.4-5).
	f := inertAck(req, "")
	f["messageId"] = m.MemoryID
	return []any{f}, nil
}
