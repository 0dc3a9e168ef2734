package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/meshd/meshd/client"
)

// Skills shared in the mesh (share_skill, docs/protocol.md C.2) are the MCP
// server's prompts: prompts/list lists them, prompts/get returns a skill's
// instructions, fetched from the broker at that moment. The list follows
// the mesh: it is read again before every prompts/list and every
// --skills-poll interval, and a change is announced to the client with
// notifications/prompts/list_changed (the SDK sends it when a prompt is
// added or removed). The broker pushes nothing when a skill changes, so
// polling is how a change made elsewhere arrives.

// skillsPollDefault is how often the skills are read again.
const skillsPollDefault = 30 * time.Second

// skillInput is the one optional argument of every skill prompt: what the
// user typed after the slash command.
const skillInput = "input"

// skillEntry is one row of skill_list.
type skillEntry struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Tags        []string `json:"tags"`
	Author      string   `json:"author"`
	CreatedAt   string   `json:"createdAt"`
}

func (s skillEntry) equal(o skillEntry) bool {
	return s.Name == o.Name && s.Description == o.Description && slices.Equal(s.Tags, o.Tags) &&
		s.Author == o.Author && s.CreatedAt == o.CreatedAt
}

// skillPrompts keeps srv's prompts equal to the mesh's skills.
type skillPrompts struct {
	cl     *client.Client // immutable
	srv    *mcp.Server    // immutable
	slug   string         // immutable
	stderr io.Writer      // immutable

	mu   sync.Mutex            // serializes refreshes
	have map[string]skillEntry // guarded by mu; the prompts srv lists
}

// refresh reads the mesh's skills and adds, replaces or removes prompts
// where they differ; it returns how many prompts changed.
func (p *skillPrompts) refresh(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	raw, err := p.cl.Request(ctx, map[string]any{"type": "list_skills"}, "skill_list")
	if err != nil {
		return 0, fmt.Errorf("list_skills: %s", brokerReason(err))
	}
	var list struct {
		Skills []skillEntry `json:"skills"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return 0, fmt.Errorf("list_skills: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := make(map[string]skillEntry, len(list.Skills))
	changed := 0
	for _, s := range list.Skills {
		now[s.Name] = s
		if old, ok := p.have[s.Name]; ok && old.equal(s) {
			continue
		}
		p.srv.AddPrompt(p.prompt(s), p.get)
		changed++
	}
	var gone []string
	for name := range p.have {
		if _, ok := now[name]; !ok {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		p.srv.RemovePrompts(gone...)
		changed += len(gone)
	}
	p.have = now
	return changed, nil
}

func (p *skillPrompts) prompt(s skillEntry) *mcp.Prompt {
	desc := s.Description
	if s.Author != "" {
		desc += " (skill shared by " + s.Author + " in mesh " + p.slug + ")"
	}
	return &mcp.Prompt{
		Name: s.Name, Title: s.Name, Description: desc,
		Arguments: []*mcp.PromptArgument{{Name: skillInput, Description: "what to apply the skill to (optional)"}},
	}
}

// skillData is get_skill's skill.
type skillData struct {
	Name         string `json:"name"`
	Description  string `json:"description"`
	Instructions string `json:"instructions"`
	Manifest     struct {
		Context string `json:"context"`
	} `json:"manifest"`
}

// get answers prompts/get with the skill's instructions as they are now.
func (p *skillPrompts) get(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	name := req.Params.Name
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	raw, err := p.cl.Request(ctx, map[string]any{"type": "get_skill", "name": name}, "skill_data")
	if err != nil {
		return nil, fmt.Errorf("get_skill %s: %s", name, brokerReason(err))
	}
	var reply struct {
		Skill *skillData `json:"skill"`
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return nil, fmt.Errorf("get_skill %s: %w", name, err)
	}
	if reply.Skill == nil {
		go p.refreshLogged(context.WithoutCancel(ctx)) // it was removed: drop the prompt
		return nil, fmt.Errorf("skill %q is no longer shared in mesh %s", name, p.slug)
	}
	text := reply.Skill.Instructions
	if reply.Skill.Manifest.Context == "fork" {
		// The skill's manifest asks for its own context.
		text = "Run the following skill in a sub-agent (its own context), then report the result.\n\n" + text
	}
	if in := strings.TrimSpace(req.Params.Arguments[skillInput]); in != "" {
		text += "\n\n" + in
	}
	return &mcp.GetPromptResult{
		Description: reply.Skill.Description,
		Messages:    []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: text}}},
	}, nil
}

func (p *skillPrompts) refreshLogged(ctx context.Context) {
	if n, err := p.refresh(ctx); err != nil {
		fmt.Fprintf(p.stderr, "meshctl mcp: skills: %v\n", err)
	} else if n > 0 {
		fmt.Fprintf(p.stderr, "meshctl mcp: skills: %d prompt(s) changed\n", n)
	}
}

// poll refreshes every interval until ctx ends.
func (p *skillPrompts) poll(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.refreshLogged(ctx)
		}
	}
}

// listMiddleware reads the skills again before the SDK answers
// prompts/list, so the list is current when Claude Code asks; a broker
// that does not answer leaves the last list.
func (p *skillPrompts) listMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if method == "prompts/list" {
			p.refreshLogged(ctx)
		}
		return next(ctx, method, req)
	}
}
