package collab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/meshd/meshd"
)

func (h *Handler) shareSkill(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Name         string          `json:"name"`
		Description  *string         `json:"description"`
		Instructions *string         `json:"instructions"`
		Tags         []string        `json:"tags"`
		Manifest     json.RawMessage `json:"manifest"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if err := checkName("name", m.Name); err != nil {
		return nil, err
	}
	if m.Description == nil || m.Instructions == nil || strings.TrimSpace(*m.Instructions) == "" {
		return nil, invalidArgs("description and instructions are required")
	}
	if err := checkTags("tags", m.Tags); err != nil {
		return nil, err
	}
	manifest := bytes.TrimSpace(m.Manifest)
	if bytes.Equal(manifest, []byte("null")) {
		manifest = nil
	}
	if len(manifest) > 0 && manifest[0] != '{' {
		return nil, invalidArgs("manifest must be an object")
	}
	s := Skill{Name: m.Name, Description: *m.Description, Instructions: *m.Instructions,
		Tags: nonNil(m.Tags), Author: p.MemberName, Manifest: manifest}
	if err := h.st.ShareSkill(ctx, p.MeshID, p.MemberID, s); err != nil {
		return nil, err
	}
	f := newFrame("skill_ack", req)
	f["name"], f["action"] = m.Name, "shared"
	return []any{f}, nil
}

func skillName(req *request) (string, error) {
	var m struct {
		Name string `json:"name"`
	}
	if err := req.decode(&m); err != nil {
		return "", err
	}
	return m.Name, checkName("name", m.Name)
}

func (h *Handler) getSkill(ctx context.Context, p Peer, req *request) ([]any, error) {
	name, err := skillName(req)
	if err != nil {
		return nil, err
	}
	s, err := h.st.GetSkill(ctx, p.MeshID, name)
	f := newFrame("skill_data", req)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		f["skill"] = nil // not found is skill:null, not an error (E.8)
		return []any{f}, nil
	case err != nil:
		return nil, err
	}
	var manifest any
	if len(s.Manifest) > 0 {
		manifest = s.Manifest
	}
	f["skill"] = map[string]any{"name": s.Name, "description": s.Description, "instructions": s.Instructions,
		"tags": nonNil(s.Tags), "author": orUnknown(s.Author), "manifest": manifest, "createdAt": iso(s.CreatedAt)}
	return []any{f}, nil
}

func (h *Handler) listSkills(ctx context.Context, p Peer, req *request) ([]any, error) {
	var m struct {
		Query string `json:"query"`
	}
	if err := req.decode(&m); err != nil {
		return nil, err
	}
	if err := checkQuery(m.Query); err != nil {
		return nil, err
	}
	rows, err := h.st.ListSkills(ctx, p.MeshID, m.Query)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(rows))
	for _, s := range rows {
		out = append(out, map[string]any{"name": s.Name, "description": s.Description, "tags": nonNil(s.Tags),
			"author": orUnknown(s.Author), "createdAt": iso(s.CreatedAt)})
	}
	f := newFrame("skill_list", req)
	f["skills"] = out
	return []any{f}, nil
}

func (h *Handler) removeSkill(ctx context.Context, p Peer, req *request) ([]any, error) {
	name, err := skillName(req)
	if err != nil {
		return nil, err
	}
	removed, err := h.st.RemoveSkill(ctx, p.MeshID, name)
	if err != nil {
		return nil, err
	}
	f := newFrame("skill_ack", req)
	f["name"], f["action"] = name, "not_found"
	if removed {
		f["action"] = "removed"
	}
	return []any{f}, nil
}
