package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// member is one enrolled identity: its mesh, member id and key, and the
// broker URL its client connects to.
type member struct {
	idx    int
	mesh   string // mesh id
	slot   int    // index within its mesh
	id     string // member id from POST /join
	key    client.Identity
	wsURL  string
	urlIdx int
}

// api calls a broker's HTTP routes.
type api struct {
	token string
	hc    *http.Client
}

// httpBase turns ws://host/ws into http://host (the claudemesh CLI's rule).
func httpBase(wsURL string) string {
	u, _ := url.Parse(wsURL)
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

func (a *api) call(ctx context.Context, method, target, token string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d %s", method, target, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	return json.Unmarshal(raw, out)
}

// createMesh is POST /cli/mesh/create plus one invite for size members.
func (a *api) createMesh(ctx context.Context, base, runID string, n, size int) (string, string, *wire.InvitePayload, error) {
	slug := fmt.Sprintf("bench-%s-%d", runID, n)
	var m struct {
		ID   string `json:"id"`
		Slug string `json:"slug"`
	}
	owner := client.GenerateIdentity()
	body := map[string]string{"name": slug, "slug": slug, "pubkey": owner.Pubkey}
	if err := a.call(ctx, "POST", base+"/cli/mesh/create", a.token, body, &m); err != nil {
		return "", "", nil, err
	}
	var inv struct {
		Token string `json:"token"`
	}
	req := map[string]any{"role": "member", "max_uses": size}
	if err := a.call(ctx, "POST", base+"/cli/mesh/"+url.PathEscape(m.Slug)+"/invite", a.token, req, &inv); err != nil {
		return "", "", nil, err
	}
	p, err := wire.DecodeInviteToken(inv.Token)
	if err != nil {
		return "", "", nil, fmt.Errorf("invite token: %w", err)
	}
	return m.ID, inv.Token, p, nil
}

// join is POST /join for one member.
func (a *api) join(ctx context.Context, base, token string, p *wire.InvitePayload, mb *member) error {
	var out struct {
		MemberID string `json:"memberId"`
	}
	body := map[string]any{"invite_token": token, "invite_payload": p, "peer_pubkey": mb.key.Pubkey,
		"display_name": fmt.Sprintf("bench-%d", mb.idx)}
	if err := a.call(ctx, "POST", base+"/join", "", body, &out); err != nil {
		return err
	}
	if out.MemberID == "" {
		return fmt.Errorf("POST /join answered no memberId")
	}
	mb.id = out.MemberID
	return nil
}

// enroll creates ceil(n/meshSize) meshes and n members, member i on
// URLs[i % len(URLs)], and returns them in index order.
func enroll(ctx context.Context, cfg Config, runID string, n int, logf func(string, ...any)) ([]*member, error) {
	a := &api{token: cfg.Token, hc: &http.Client{Timeout: 30 * time.Second}}
	start := time.Now()
	members := make([]*member, n)
	for i := range members {
		u := i % len(cfg.URLs)
		members[i] = &member{idx: i, slot: i % cfg.MeshSize, key: client.GenerateIdentity(), wsURL: cfg.URLs[u], urlIdx: u}
	}
	for first := 0; first < n; first += cfg.MeshSize {
		group := members[first:min(first+cfg.MeshSize, n)]
		base := httpBase(cfg.URLs[(first/cfg.MeshSize)%len(cfg.URLs)])
		meshID, tok, p, err := a.createMesh(ctx, base, runID, first/cfg.MeshSize, len(group))
		if err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
		if err := joinAll(ctx, a, cfg, tok, p, meshID, group); err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
	}
	logf("enrolled %d members in %d meshes through HTTP in %s", n, (n+cfg.MeshSize-1)/cfg.MeshSize, fmtDur(time.Since(start)))
	return members, nil
}

// joinAll joins group to one mesh with cfg.Joins calls in flight, each on
// its member's own broker.
func joinAll(ctx context.Context, a *api, cfg Config, tok string, p *wire.InvitePayload, meshID string, group []*member) error {
	sem := make(chan struct{}, cfg.Joins)
	var wg sync.WaitGroup
	errs := make(chan error, len(group))
	for _, mb := range group {
		mb.mesh = meshID
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := a.join(ctx, httpBase(mb.wsURL), tok, p, mb); err != nil {
				errs <- fmt.Errorf("member %d: %w", mb.idx, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when closed and empty
}

// newRunID is a short unique tag for mesh slugs and session ids.
func newRunID() string {
	id := strings.ToLower(meshd.NewID())
	return id[len(id)-8:]
}
