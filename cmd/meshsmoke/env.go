package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/internal/linklog"
	"github.com/meshd/meshd/store"
)

// env is what the steps share: the running cluster, a store handle for
// enrollment, and the figures they measure.
type env struct {
	c    *cluster
	o    options
	logf func(string, ...any)
	figs *figures
	st   *store.Store

	// auditMeshes are meshes whose chains step 4 verifies besides its own
	// (the failover mesh saw writes from both replicas and a crash).
	mu          sync.Mutex
	auditMeshes []string // guarded by mu
}

func newEnv(ctx context.Context, c *cluster, o options, logf func(string, ...any), figs *figures) (*env, error) {
	if err := startCluster(ctx, c); err != nil {
		return nil, err
	}
	// meshd migrated the database at start; the store is only used to
	// enroll meshes and members (as e2e_test.go does).
	st, err := store.New(ctx, store.Config{URL: c.dsn, MaxConns: 4})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &env{c: c, o: o, logf: logf, figs: figs, st: st}, nil
}

func (e *env) close() { e.st.Close() }

// stepDef is one named step with its time limit.
type stepDef struct {
	name    string
	timeout time.Duration
	run     func(context.Context, *env) (notes []string, err error)
}

// stepDefs are the five proofs, in order; -steps selects by
// 1-based index.
var stepDefs = []stepDef{
	{"1 cross-replica DM", 30 * time.Second, stepDM},
	{"2 streams: subscribe A, publish B", 30 * time.Second, stepStreams},
	{"3 kill -9 A under load", 150 * time.Second, stepFailover},
	{"4 audit chain verifies", 60 * time.Second, stepAudit},
	{"5 rolling restart under load", 180 * time.Second, stepRolling},
}

// missingError marks a step failure caused by a broker feature that is
// not implemented yet, as opposed to a broken one.
type missingError struct {
	feature string
	err     error
}

func (m *missingError) Error() string { return m.err.Error() }
func (m *missingError) Unwrap() error { return m.err }

// asMissing wraps err as a missing feature when the broker answered that
// it does not implement the verb (the stubs' "unavailable" error, or A.2's
// unknown_message_type).
func asMissing(feature string, err error) error {
	var se *client.ServerError
	if errors.As(err, &se) && (se.Code == "unavailable" || se.Code == "unknown_message_type") {
		return &missingError{feature: feature, err: err}
	}
	return err
}

func (e *env) runStep(ctx context.Context, def stepDef) result {
	r := result{Step: def.name}
	e.logf("step %s: start", def.name)
	if ctx.Err() != nil {
		r.Notes = "not run: " + context.Cause(ctx).Error()
		return r
	}
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, def.timeout, fmt.Errorf("step timeout %v", def.timeout))
	defer cancel()
	if err := e.c.ensureRunning(ctx); err != nil {
		r.Duration, r.Notes = time.Since(start), "cluster not healthy before the step: "+err.Error()
		return r
	}
	notes, err := def.run(ctx, e)
	r.Duration = time.Since(start)
	if err == nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		var me *missingError
		if errors.As(err, &me) {
			r.Missing = me.feature
		}
		notes = append([]string{err.Error()}, notes...)
	}
	r.Pass = err == nil
	r.Notes = strings.Join(notes, "; ")
	e.logf("step %s: %s in %s", def.name, r.verdict(), fmtDur(r.Duration))
	return r
}

// enrolled is a fresh mesh and its members, created through the store.
type enrolled struct {
	mesh    meshd.Mesh
	members []meshd.Member
	keys    []client.Identity
}

func (e *env) enroll(ctx context.Context, label string, n int) (*enrolled, error) {
	en := &enrolled{mesh: meshd.Mesh{Name: "smoke " + label, Slug: "smoke-" + label + "-" + strings.ToLower(meshd.NewID()[:8]), OwnerUserID: "smoke-owner"}}
	if err := e.st.CreateMesh(ctx, &en.mesh); err != nil {
		return nil, fmt.Errorf("create mesh: %w", err)
	}
	for i := 0; i < n; i++ {
		key := client.GenerateIdentity()
		m := meshd.Member{MeshID: en.mesh.ID, UserID: fmt.Sprintf("smoke-%s-%d", label, i), Pubkey: key.Pubkey,
			DisplayName: fmt.Sprintf("%s-%d", label, i), Role: "member"}
		if err := e.st.CreateMember(ctx, &m); err != nil {
			return nil, fmt.Errorf("create member: %w", err)
		}
		en.members = append(en.members, m)
		en.keys = append(en.keys, key)
	}
	return en, nil
}

// peer is one client connection through the load balancer, with its own
// cookie jar (HAProxy stickiness) and lifecycle log.
type peer struct {
	idx   int
	c     *client.Client
	jar   http.CookieJar
	links *linklog.Log
}

// lbURL is the load balancer as the cookie jar sees it.
func (e *env) lbURL() *url.URL {
	return &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", e.c.lbPort), Path: "/ws"}
}

// node is the replica HAProxy pins p to: its cm_node cookie.
func (e *env) node(p *peer) string {
	for _, ck := range p.jar.Cookies(e.lbURL()) {
		if ck.Name == lbCookie {
			return ck.Value
		}
	}
	return ""
}

type dialOpts struct {
	pin       string // replica to stick to (pre-set cm_node cookie); "" lets HAProxy choose
	session   bool   // session_hello (per-session presence) instead of a member-key hello
	reconnect bool   // Reconnect + AckPushes: a long-lived, at-least-once client
}

// dial connects member i of en through HAProxy.
func (e *env) dial(ctx context.Context, en *enrolled, i int, o dialOpts) (*peer, error) {
	jar, _ := cookiejar.New(nil)
	if o.pin != "" {
		jar.SetCookies(e.lbURL(), []*http.Cookie{{Name: lbCookie, Value: o.pin}})
	}
	p := &peer{idx: i, jar: jar, links: newLinkLog()}
	cfg := client.Config{
		URL: e.c.wsURL(), MeshID: en.mesh.ID, MemberID: en.members[i].ID, Member: en.keys[i],
		SessionID: fmt.Sprintf("smoke-%s-%d", en.mesh.ID, i), DisplayName: en.members[i].DisplayName,
		CWD: "/smoke", PID: 10000 + i, AckPushes: o.reconnect, Reconnect: o.reconnect,
		Dialer:         &websocket.Dialer{Jar: jar, HandshakeTimeout: 5 * time.Second},
		RequestTimeout: 8 * time.Second, OnEvent: p.links.Record,
	}
	if o.session {
		s := client.GenerateIdentity()
		cfg.Session = &s
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(dctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("dial member %d (pin %q): %w", i, o.pin, err)
	}
	p.c = c
	if o.pin != "" {
		if got := e.node(p); got != o.pin {
			_ = c.Close()
			return nil, fmt.Errorf("member %d pinned to %s landed on %q", i, o.pin, got)
		}
	}
	return p, nil
}

// nextPush waits for p's next non-system push.
func nextPush(ctx context.Context, p *peer, budget time.Duration) (client.Message, error) {
	t := time.NewTimer(budget)
	defer t.Stop()
	for {
		select {
		case m, ok := <-p.c.Pushes():
			if !ok {
				return m, fmt.Errorf("client %d closed: %v", p.idx, p.c.Err())
			}
			if !m.System() {
				return m, nil
			}
		case <-t.C:
			return client.Message{}, fmt.Errorf("no push within %v", budget)
		case <-ctx.Done():
			return client.Message{}, context.Cause(ctx)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// figures are the measurements printed under the table.
type figures struct {
	mu            sync.Mutex
	failover      time.Duration // kill -9 → last client reattached
	failoverN     int
	rollingMax    time.Duration // longest socket loss during the rolling restart
	rollingDrains []string
	traffic       []string
}

func (f *figures) add(dst *[]string, format string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	*dst = append(*dst, fmt.Sprintf(format, a...))
}

func (f *figures) print(w io.Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failoverN > 0 {
		fmt.Fprintf(w, "failover: kill -9 of replica A → all %d of its clients reattached on B in %s\n", f.failoverN, fmtDur(f.failover))
	}
	if f.rollingMax > 0 {
		fmt.Fprintf(w, "rolling restart: max reconnect %s", fmtDur(f.rollingMax))
		if len(f.rollingDrains) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(f.rollingDrains, ", "))
		}
		fmt.Fprintln(w)
	}
	for _, s := range f.traffic {
		fmt.Fprintln(w, "messages: "+s)
	}
}
