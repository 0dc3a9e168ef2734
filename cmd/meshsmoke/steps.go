package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshd/meshd"
)

// Budgets of the delivery contract.
const (
	// failoverBudget is the "every client is reattached within 10 s".
	failoverBudget = 10 * time.Second
	// tailBudget bounds the wait for the last acked messages after traffic
	// stops: a push written by a replica that then died is redelivered
	// only when its 30 s claim lease expires (store.DefaultClaimLease) plus
	// one re-drain interval.
	tailBudget = 40 * time.Second
	// drainBudget bounds SIGTERM → exit (meshd's own shutdown budget is 10 s).
	drainBudget = 20 * time.Second
)

// stepDM: (1) a DM to a peer connected on the other replica is delivered
// and decrypts, both ways: alice (member-key hello) on A, bob
// (session_hello) on B.
func stepDM(ctx context.Context, e *env) ([]string, error) {
	en, err := e.enroll(ctx, "dm", 2)
	if err != nil {
		return nil, err
	}
	alice, err := e.dial(ctx, en, 0, dialOpts{pin: "a"})
	if err != nil {
		return nil, err
	}
	defer alice.c.Close()
	bob, err := e.dial(ctx, en, 1, dialOpts{pin: "b", session: true})
	if err != nil {
		return nil, err
	}
	defer bob.c.Close()
	var notes []string
	for _, dir := range []struct {
		name     string
		from, to *peer
	}{{"A→B", alice, bob}, {"B→A", bob, alice}} {
		d, err := dmOnce(ctx, dir.from, dir.to)
		if err != nil {
			return notes, fmt.Errorf("%s: %w", dir.name, err)
		}
		notes = append(notes, fmt.Sprintf("%s %s", dir.name, fmtDur(d)))
	}
	return append(notes, "crypto_box decrypts, messageId matches ack"), nil
}

// dmOnce sends one DM and waits for it; it returns send → push latency.
func dmOnce(ctx context.Context, from, to *peer) (time.Duration, error) {
	text := "across replicas " + meshd.NewID()
	start := time.Now()
	ack, err := from.c.Send(ctx, to.c.Pubkey(), meshd.PriorityNow, []byte(text))
	if err != nil {
		return 0, fmt.Errorf("send: %w", err)
	}
	m, err := nextPush(ctx, to, 5*time.Second)
	if err != nil {
		return 0, err
	}
	switch {
	case m.DecryptErr != nil:
		return 0, fmt.Errorf("push does not decrypt: %v", m.DecryptErr)
	case !m.Encrypted || string(m.Plaintext) != text:
		return 0, fmt.Errorf("got %q (encrypted %v), want %q", m.Plaintext, m.Encrypted, text)
	case m.Push.MessageID != ack.MessageID:
		return 0, fmt.Errorf("push messageId %s, ack %s", m.Push.MessageID, ack.MessageID)
	}
	return time.Since(start), nil
}

// stepStreams: (2) subscribe on A, publish on B → stream_data on A
// (B.14.2). list_streams' cluster-wide subscriber count is noted.
func stepStreams(ctx context.Context, e *env) ([]string, error) {
	en, err := e.enroll(ctx, "streams", 2)
	if err != nil {
		return nil, err
	}
	sub, err := e.dial(ctx, en, 0, dialOpts{pin: "a"})
	if err != nil {
		return nil, err
	}
	defer sub.c.Close()
	pub, err := e.dial(ctx, en, 1, dialOpts{pin: "b"})
	if err != nil {
		return nil, err
	}
	defer pub.c.Close()
	stream := "smoke-" + strings.ToLower(meshd.NewID()[:6])
	if _, err := pub.c.Request(ctx, map[string]any{"type": "create_stream", "name": stream}, "stream_created"); err != nil {
		return nil, asMissing("streams", fmt.Errorf("create_stream on B: %w", err))
	}
	if _, err := sub.c.Request(ctx, map[string]any{"type": "subscribe", "stream": stream}, "subscribed"); err != nil {
		return nil, asMissing("streams", fmt.Errorf("subscribe on A: %w", err))
	}
	nonce := meshd.NewID()
	start := time.Now()
	if err := pub.c.SendFrame(ctx, map[string]any{"type": "publish", "stream": stream, "data": map[string]any{"nonce": nonce}}); err != nil {
		return nil, fmt.Errorf("publish on B: %w", err)
	}
	by, err := awaitStreamData(ctx, sub, pub, stream, nonce, 5*time.Second)
	if err != nil {
		return nil, err
	}
	notes := []string{fmt.Sprintf("stream_data on A after %s (publishedBy %q)", fmtDur(time.Since(start)), by)}
	return append(notes, streamCount(ctx, pub, stream)), nil
}

// awaitStreamData waits for sub's stream_data carrying nonce. An error
// frame on either client (a stubbed verb answers publish with one) ends
// the wait early.
func awaitStreamData(ctx context.Context, sub, pub *peer, stream, nonce string, budget time.Duration) (string, error) {
	t := time.NewTimer(budget)
	defer t.Stop()
	for {
		select {
		case raw, ok := <-sub.c.Frames():
			if !ok {
				return "", fmt.Errorf("subscriber closed: %v", sub.c.Err())
			}
			var f struct {
				Type, Stream, PublishedBy string
				Data                      struct{ Nonce string }
			}
			if json.Unmarshal(raw, &f) == nil && f.Type == "stream_data" && f.Stream == stream && f.Data.Nonce == nonce {
				return f.PublishedBy, nil
			}
		case we := <-pub.c.Errors():
			return "", asMissing("streams", fmt.Errorf("publish on B: error %s: %s", we.Code, we.Message))
		case <-t.C:
			return "", fmt.Errorf("no stream_data on A within %v of publish on B", budget)
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
	}
}

// streamCount reports list_streams' subscriber count for stream as seen
// from B (issue 5: counts are cluster-wide). Informational only.
func streamCount(ctx context.Context, p *peer, stream string) string {
	raw, err := p.c.Request(ctx, map[string]any{"type": "list_streams"}, "stream_list")
	if err != nil {
		return "list_streams: " + err.Error()
	}
	var l struct {
		Streams []struct {
			Name            string
			SubscriberCount int
		}
	}
	_ = json.Unmarshal(raw, &l)
	for _, s := range l.Streams {
		if s.Name == stream {
			return fmt.Sprintf("list_streams on B: subscriberCount %d", s.SubscriberCount)
		}
	}
	return "list_streams on B: stream not listed"
}

// stepFailover: (3) kill -9 replica A while the fleet sends; every client
// of A reattaches (through HAProxy, landing on B) within 10 s; every acked
// message arrives; duplicates only with the same messageId. A is started
// again at the end for the later steps.
func stepFailover(ctx context.Context, e *env) ([]string, error) {
	f, err := e.newFleet(ctx, "failover", e.o.clients)
	if err != nil {
		return nil, err
	}
	defer f.close()
	e.mu.Lock()
	e.auditMeshes = append(e.auditMeshes, f.en.mesh.ID)
	e.mu.Unlock()
	onA, onB := f.onNode("a"), f.onNode("b")
	if len(onA) != len(f.peers)/2 || len(onB) != len(f.peers)/2 {
		return nil, fmt.Errorf("clients not split evenly: %d on A, %d on B", len(onA), len(onB))
	}
	f.startTraffic(e.o.rate)
	if err := sleepCtx(ctx, e.o.phase); err != nil {
		return nil, err
	}
	killAt, err := e.c.kill9("a")
	if err != nil {
		return nil, err
	}
	var probs, notes []string
	failover, rerr := waitReattached(ctx, onA, killAt, failoverBudget+5*time.Second)
	switch {
	case rerr != nil:
		probs = append(probs, rerr.Error())
	case failover > failoverBudget:
		probs = append(probs, fmt.Sprintf("reattach took %s (> %v)", fmtDur(failover), failoverBudget))
	}
	if rerr == nil {
		e.figs.mu.Lock()
		e.figs.failover, e.figs.failoverN = failover, len(onA)
		e.figs.mu.Unlock()
		notes = append(notes, fmt.Sprintf("failover %s for %d clients", fmtDur(failover), len(onA)))
	}
	if n := countNotOn(e, onA, "b"); n > 0 {
		probs = append(probs, fmt.Sprintf("%d clients of A are not pinned to B after the failover", n))
	}
	if _, n := maxOutage(onB, killAt); n > 0 {
		notes = append(notes, fmt.Sprintf("%d clients of B lost their socket too", n))
	}
	_ = sleepCtx(ctx, e.o.phase) // traffic after the failover
	d, dprobs := f.checkDelivery(ctx, killAt, tailBudget)
	probs = append(probs, dprobs...)
	notes = append(notes, d.notes()...)
	e.figs.add(&e.figs.traffic, "step 3 (failover): %s", strings.Join(d.notes(), "; "))
	notes = append(notes, restart(ctx, e, "a"))
	return notes, joinProblems(probs)
}

func countNotOn(e *env, ps []*peer, node string) int {
	n := 0
	for _, p := range ps {
		if e.node(p) != node {
			n++
		}
	}
	return n
}

// restart starts replica name again and waits until HAProxy routes to it.
func restart(ctx context.Context, e *env, name string) string {
	start := time.Now()
	if err := e.c.startReplica(ctx, name); err != nil {
		return "restart " + name + ": " + err.Error()
	}
	if err := e.c.waitLB(ctx, map[string]bool{name: true}, 20*time.Second); err != nil {
		return "restart " + name + ": " + err.Error()
	}
	return fmt.Sprintf("%s restarted and back in the LB in %s", strings.ToUpper(name), fmtDur(time.Since(start)))
}

func joinProblems(probs []string) error {
	if len(probs) == 0 {
		return nil
	}
	return errors.New(strings.Join(probs, "; "))
}

// stepAudit: (4) concurrent audited writes (message_sent, state_set,
// peer_joined) from clients on both replicas, then `meshd audit verify
// --mesh <id>` must exit 0 for this mesh and for the failover mesh.
func stepAudit(ctx context.Context, e *env) ([]string, error) {
	en, err := e.enroll(ctx, "audit", 4)
	if err != nil {
		return nil, err
	}
	ps := make([]*peer, 4)
	for i := range ps {
		if ps[i], err = e.dial(ctx, en, i, dialOpts{pin: replicaNames[i/2], reconnect: true}); err != nil {
			return nil, err
		}
		defer ps[i].c.Close()
	}
	const perClient = 40
	if err := auditWrites(ctx, ps, perClient); err != nil {
		return nil, err
	}
	var notes []string
	notes = append(notes, fmt.Sprintf("%d DMs + %d set_state from 2 clients on each replica", 4*perClient, 4*perClient/4))
	_ = sleepCtx(ctx, time.Second) // audit writes are off the message path (issue 5)
	notes = append(notes, wsAuditVerify(ctx, ps[0]))
	e.mu.Lock()
	meshes := append([]string{en.mesh.ID}, e.auditMeshes...)
	e.mu.Unlock()
	for i, id := range meshes {
		out, err := cliAuditVerify(ctx, e, id)
		label := "audit mesh"
		if i > 0 {
			label = "failover mesh"
		}
		if err != nil {
			return notes, fmt.Errorf("%s: %w", label, err)
		}
		notes = append(notes, fmt.Sprintf("%s: meshd audit verify exit 0 (%s)", label, out))
	}
	return notes, nil
}

// auditWrites has every client send perClient DMs to a client on the
// other replica and a set_state every fourth one, all concurrently, and
// waits for the DMs to arrive (so their audit rows were written).
func auditWrites(ctx context.Context, ps []*peer, perClient int) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		to := ps[(i+2)%len(ps)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range perClient {
				if _, err := p.c.Send(ctx, to.c.Pubkey(), meshd.PriorityNow, []byte(fmt.Sprintf("audit %d/%d", i, n))); err != nil {
					errs[i] = fmt.Errorf("send: %w", err)
					return
				}
				if n%4 == 0 {
					_ = p.c.SendFrame(ctx, map[string]any{"type": "set_state", "key": fmt.Sprintf("k%d", n%3), "value": map[string]any{"by": i, "n": n}})
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, p := range ps {
		for range perClient {
			if _, err := nextPush(ctx, p, 10*time.Second); err != nil {
				return fmt.Errorf("client %d: %w", p.idx, err)
			}
		}
	}
	return nil
}

// wsAuditVerify runs audit_verify over WS (B.8); informational.
func wsAuditVerify(ctx context.Context, p *peer) string {
	raw, err := p.c.Request(ctx, map[string]any{"type": "audit_verify"}, "audit_verify_result")
	if err != nil {
		return "ws audit_verify: " + err.Error()
	}
	var r struct {
		Valid    bool
		Entries  int
		BrokenAt any
	}
	_ = json.Unmarshal(raw, &r)
	return fmt.Sprintf("ws audit_verify: valid=%v entries=%d", r.Valid, r.Entries)
}

// cliAuditVerify runs `meshd audit verify --mesh id` against the run's
// database and returns its last output line.
func cliAuditVerify(ctx context.Context, e *env, meshID string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.o.binDir, "meshd"), "audit", "verify", "--mesh", meshID)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+e.c.dsn, "LOG_LEVEL=warn", "BROKER_SKIP_MIGRATE=1")
	out, err := cmd.CombinedOutput()
	text := strings.TrimSpace(string(out))
	last := text
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		last = text[i+1:]
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return last, nil
	case errors.As(err, &ee) && ee.ExitCode() == 2 && strings.Contains(text, "unknown command"):
		return "", &missingError{feature: "meshd audit verify", err: errors.New("audit verify not available (meshd: unknown command \"audit\")")}
	default:
		return "", fmt.Errorf("meshd audit verify --mesh %s: %v: %s", meshID, err, text)
	}
}

// stepRolling: (5) SIGTERM A, wait for its clients to reattach, start A,
// then the same for B, all under steady traffic: every acked message
// arrives and every client reattaches.
func stepRolling(ctx context.Context, e *env) ([]string, error) {
	f, err := e.newFleet(ctx, "rolling", e.o.clients)
	if err != nil {
		return nil, err
	}
	defer f.close()
	begin := time.Now()
	f.startTraffic(e.o.rate)
	if err := sleepCtx(ctx, e.o.phase); err != nil {
		return nil, err
	}
	var probs, notes []string
	for _, name := range replicaNames {
		on := f.onNode(name)
		at, took, code, err := e.c.terminate(ctx, name, drainBudget)
		up := strings.ToUpper(name)
		if err != nil {
			probs = append(probs, err.Error())
		} else if code != 0 {
			probs = append(probs, fmt.Sprintf("%s exited %d after SIGTERM (want 0)", up, code))
		}
		d, rerr := waitReattached(ctx, on, at, 20*time.Second)
		if rerr != nil {
			probs = append(probs, up+": "+rerr.Error())
		}
		notes = append(notes, fmt.Sprintf("%s drained in %s (exit %d), its %d clients reattached in %s", up, fmtDur(took), code, len(on), fmtDur(d)))
		e.figs.add(&e.figs.rollingDrains, "%s: drain %s, %d clients reattached in %s", up, fmtDur(took), len(on), fmtDur(d))
		notes = append(notes, restart(ctx, e, name))
		if !e.c.running(name) {
			probs = append(probs, up+" did not come back")
		}
		_ = sleepCtx(ctx, e.o.phase)
	}
	worst, outages := maxOutage(f.peers, begin)
	e.figs.mu.Lock()
	e.figs.rollingMax = worst
	e.figs.mu.Unlock()
	d, dprobs := f.checkDelivery(ctx, begin, tailBudget)
	probs = append(probs, dprobs...)
	notes = append(notes, fmt.Sprintf("max reconnect %s over %d socket losses", fmtDur(worst), outages))
	notes = append(notes, d.notes()...)
	e.figs.add(&e.figs.traffic, "step 5 (rolling restart): %s", strings.Join(d.notes(), "; "))
	return notes, joinProblems(probs)
}
