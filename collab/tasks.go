package collab

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/meshd/meshd"
)

func (h *Handler) createTask(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Title    *string  `json:"title"`
		Assignee string   `json:"assignee"`
		Priority string   `json:"priority"`
		Tags     []string `json:"tags"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if m.Title == nil || strings.TrimSpace(*m.Title) == "" {
		return nil, invalidArgs("title is required")
	}
	if len(m.Assignee) > maxNameLen || len(m.Priority) > 32 {
		return nil, invalidArgs(fmt.Sprintf("assignee (max %d bytes) or priority (max 32 bytes) too long", maxNameLen))
	}
	if err := checkTags("tags", m.Tags); err != nil {
		return nil, err
	}
	if m.Priority == "" {
		m.Priority = "normal"
	}
	t := Task{Title: *m.Title, Assignee: m.Assignee, Priority: m.Priority, Tags: nonNil(m.Tags), CreatedBy: p.MemberName}
	if err := h.st.CreateTask(ctx, p.MeshID, p.MemberID, &t); err != nil {
		return nil, err
	}
	f := newFrame("task_created", req)
	f["id"] = t.ID
	return []any{f}, nil
}

type taskRef struct {
	TaskID string `json:"taskId"`
	Result string `json:"result"`
}

func decodeTaskRef(req *request) (taskRef, error) {
	var m taskRef
	if err := req.decode(&m); err != nil {
		return m, err
	}
	if len(m.TaskID) < MinIDPrefix || len(m.TaskID) > 64 {
		return m, invalidArgs(fmt.Sprintf("taskId must be a task id or a prefix of at least %d characters", MinIDPrefix))
	}
	return m, nil
}

// taskErr maps the store's lookup errors to rejections.
func taskErr(err error) error {
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		return reject("task_not_found", "task not found in this mesh")
	case errors.Is(err, meshd.ErrAmbiguous):
		return reject("ambiguous_task_id", "several tasks start with this id; give more characters")
	case errors.Is(err, ErrNotClaimable):
		return reject("task_not_claimable", "task is not open")
	}
	return err
}

// claimTask and completeTask answer with the mesh's task list, as upstream
// (E.5); a rejection is an inert ack with the code, never an error frame
// (the CLI sends these fire-and-forget).
func (h *Handler) claimTask(ctx context.Context, p Peer, req *request) ([]any, error) {
	m, err := decodeTaskRef(req)
	if err != nil {
		return nil, err
	}
	if err := h.st.ClaimTask(ctx, p.MeshID, m.TaskID, p.PresenceID, p.MemberID, p.MemberName); err != nil {
		return nil, taskErr(err)
	}
	return h.taskList(ctx, p, req, "", "")
}

func (h *Handler) completeTask(ctx context.Context, p Peer, req *request) ([]any, error) {
	m, err := decodeTaskRef(req)
	if err != nil {
		return nil, err
	}
	if err := h.st.CompleteTask(ctx, p.MeshID, m.TaskID, m.Result); err != nil {
		return nil, taskErr(err)
	}
	return h.taskList(ctx, p, req, "", "")
}

func (h *Handler) listTasks(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Status   string `json:"status"`
		Assignee string `json:"assignee"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	return h.taskList(ctx, p, req, m.Status, m.Assignee)
}

func (h *Handler) taskList(ctx context.Context, p Peer, req *request, status, assignee string) ([]any, error) {
	tasks, err := h.st.ListTasks(ctx, p.MeshID, status, assignee, taskLimit)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(tasks))
	for _, t := range tasks {
		row := map[string]any{"id": t.ID, "title": t.Title, "assignee": strOrNil(t.Assignee),
			"claimedBy": strOrNil(t.ClaimedBy), "status": t.Status, "priority": t.Priority,
			"createdBy": strOrNil(t.CreatedBy), "tags": nonNil(t.Tags), "createdAt": iso(t.CreatedAt)}
		if t.Result != "" {
			row["result"] = t.Result // beyond upstream, which never returns it (E.16-12)
		}
		out = append(out, row)
	}
	f := newFrame("task_list", req)
	f["tasks"] = out
	return []any{f}, nil
}

func strOrNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}
