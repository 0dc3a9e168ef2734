package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// The chaos suite of issue 11 (`make chaos`, docs/chaos.md): on the smoke
// cluster, each scenario runs `meshbench steady` (every messageId booked
// on both ends) while a fault is injected, polls /health/ready of both
// replicas, and judges the ledger:
//
//   - lost: an acked DM never pushed by the end of meshbench's drain;
//   - unexplained duplicate: a second push of a messageId on the same
//     socket generation of its recipient as the previous push (a
//     duplicate after the recipient's socket closed — the replica was
//     killed, NATS or PostgreSQL went away, the broker closed a slow
//     consumer — is explained: the broker redelivers what it did not see
//     acknowledged);
//   - leak: after the hostile scenario, go_goroutines of a replica not
//     back within leakGoroutines of its baseline within leakSettle, or
//     its RSS above leakRSSFactor × baseline + leakRSSSlack;
//   - an unexpected readiness flap: /health/ready of a replica going
//     non-200 in a scenario that leaves its dependencies up and does not
//     touch it.
//
// Any of these, a hostile hello accepted, or a scenario whose load did
// not run, fails the suite.

const (
	leakGoroutines = 50 // the 8 hostile session slots stay in their 90 s grace lease; a per-socket leak over 1,000 sockets is far above
	leakSettle     = 20 * time.Second
	leakRSSFactor  = 1.5
	leakRSSSlack   = 32 << 20
)

// chaosParams size the suite: bounded (CI, < 3 min) or -full.
type chaosParams struct {
	rate         float64
	peers        int
	lead, outage time.Duration // load before the fault, fault length
	tail         time.Duration // load after the repair
	slowFor      time.Duration
	hostile      int
	hostileFor   time.Duration
	drain        time.Duration
}

func chaosSizes(full bool) chaosParams {
	if full {
		return chaosParams{rate: 200, peers: 20, lead: 5 * time.Second, outage: 10 * time.Second, tail: 15 * time.Second,
			slowFor: 30 * time.Second, hostile: 1000, hostileFor: 30 * time.Second, drain: 60 * time.Second}
	}
	return chaosParams{rate: 100, peers: 10, lead: 2 * time.Second, outage: 4 * time.Second, tail: 5 * time.Second,
		slowFor: 8 * time.Second, hostile: 1000, hostileFor: 10 * time.Second, drain: 45 * time.Second}
}

// scenario is one row of the table.
type scenario struct {
	key    string // -scenarios name
	name   string
	fault  func(*cluster, context.Context) error // nil: no fault (the load itself is hostile)
	repair func(*cluster, context.Context) error
	args   func(p chaosParams) []string // extra meshbench flags
	dur    func(p chaosParams) time.Duration
	// mayFlap are the replicas whose readiness may drop in this scenario.
	mayFlap map[string]bool
	leak    bool // measure goroutines and RSS around it
}

func faultDuration(p chaosParams) time.Duration { return p.lead + p.outage + p.tail }

var scenarios = []scenario{
	{key: "kill", name: "kill -9 replica a, restart", dur: faultDuration, mayFlap: map[string]bool{"a": true},
		fault:  func(c *cluster, _ context.Context) error { _, err := c.kill9("a"); return err },
		repair: func(c *cluster, ctx context.Context) error { return c.startReplica(ctx, "a") }},
	{key: "nats", name: "stop NATS, restart", dur: faultDuration, mayFlap: map[string]bool{"a": true, "b": true},
		fault: (*cluster).stopNATS, repair: (*cluster).restartNATS},
	{key: "pg", name: "stop PostgreSQL, restart", dur: faultDuration, mayFlap: map[string]bool{"a": true, "b": true},
		fault: (*cluster).stopPostgres, repair: (*cluster).restartPostgres},
	{key: "slow", name: "slow consumer", dur: func(p chaosParams) time.Duration { return p.slowFor },
		args: func(chaosParams) []string { return []string{"--slow", "1", "--slow-bps", "4000"} }},
	{key: "hostile", name: "hostile frames/hellos", dur: func(p chaosParams) time.Duration { return p.hostileFor }, leak: true,
		args: func(p chaosParams) []string { return []string{"--hostile", strconv.Itoa(p.hostile)} }},
}

// benchReport is the part of meshbench's JSON report the suite reads.
type benchReport struct {
	Error    string   `json:"error"`
	Problems []string `json:"problems"`
	Delivery *struct {
		Attempted      int      `json:"attempted"`
		Acked          int      `json:"acked"`
		Delivered      int      `json:"delivered"`
		Lost           int      `json:"lost"`
		Duplicates     int      `json:"duplicates"`
		Explained      int      `json:"duplicates_explained"`
		Unexplained    int      `json:"duplicates_unexplained"`
		UnexplainedIDs []string `json:"unexplained_ids"`
		LastDisrupted  int64    `json:"last_disrupted_unix_ms"`
	} `json:"delivery"`
	Hostile *struct {
		Sent, Rejected, Accepted, Unanswered, Other int64
		Outcomes                                    map[string]int
	} `json:"hostile"`
	Figures map[string]string `json:"figures"`
}

// chaosRow is one scenario's outcome.
type chaosRow struct {
	name                                          string
	sent, acked, delivered, lost, dups, explained int
	unexplained                                   int
	recovery                                      string
	flaps                                         map[string]int
	fails, notes                                  []string
	dur                                           time.Duration
}

func runChaos(ctx context.Context, c *cluster, o options, stdout io.Writer, logf func(string, ...any)) int {
	start := time.Now()
	if err := startCluster(ctx, c); err != nil {
		logf("cluster did not start: %v", err)
		printLogs(stdout, c)
		return 1
	}
	p := chaosSizes(o.full)
	tc := exec.CommandContext(ctx, filepath.Join(o.binDir, "meshd"), "token", "create", "--user", "chaos")
	tc.Env = append(os.Environ(), "DATABASE_URL="+c.dsn)
	tok, err := tc.Output()
	if err != nil {
		logf("meshd token create: %v", err)
		return 1
	}
	token := strings.TrimSpace(string(tok))
	var rows []chaosRow
	for _, s := range scenarios {
		if !slices.Contains(o.scenarios, s.key) {
			continue
		}
		if ctx.Err() != nil {
			rows = append(rows, chaosRow{name: s.name, fails: []string{"not run: " + context.Cause(ctx).Error()}})
			continue
		}
		rows = append(rows, runScenario(ctx, c, s, p, token, logf))
	}
	fmt.Fprintln(stdout)
	renderChaos(stdout, rows)
	fmt.Fprintf(stdout, "total %s (%s)\n", fmtDur(time.Since(start)), map[bool]string{true: "FULL", false: "bounded"}[o.full])
	failed := false
	for _, r := range rows {
		failed = failed || len(r.fails) > 0
	}
	if failed {
		printLogs(stdout, c)
		return 1
	}
	return 0
}

func runScenario(ctx context.Context, c *cluster, s scenario, p chaosParams, token string, logf func(string, ...any)) (r chaosRow) {
	r = chaosRow{name: s.name, recovery: "-"}
	t0 := time.Now()
	defer func() { r.dur = time.Since(t0) }()
	logf("chaos %s: start", s.name)
	if err := c.ensureRunning(ctx); err != nil {
		r.fails = append(r.fails, "cluster not healthy before the scenario: "+err.Error())
		return r
	}
	var base map[string]procStats
	if s.leak {
		_ = sleepCtx(ctx, time.Second)
		base = c.sampleStats(ctx)
	}
	pctx, stopPoll := context.WithCancel(ctx)
	flaps := c.pollReady(pctx)
	jsonOut := filepath.Join(c.dir, "chaos-"+strconv.Itoa(int(t0.UnixNano()))+".json")
	ready := jsonOut + ".ready"
	dur := s.dur(p)
	args := []string{"steady", "--url", c.replicaWS("a"), "--url", c.replicaWS("b"), "--token", token,
		"--rate", fmt.Sprint(p.rate), "--peers", strconv.Itoa(p.peers), "--duration", dur.String(),
		"--drain", p.drain.String(), "--json-out", jsonOut, "--ready-file", ready, "--progress", "5s"}
	if s.args != nil {
		args = append(args, s.args(p)...)
	}
	logPath := filepath.Join(c.dir, "meshbench.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		stopPoll()
		r.fails = append(r.fails, err.Error())
		return r
	}
	defer lf.Close()
	fmt.Fprintf(lf, "=== chaos %s: meshbench %s\n", s.name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, filepath.Join(c.opts.binDir, "meshbench"), args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		stopPoll()
		r.fails = append(r.fails, "meshbench: "+err.Error())
		return r
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var repairAt time.Time
	if s.fault != nil {
		if err := waitFile(ctx, ready, waited); err != nil {
			r.fails = append(r.fails, err.Error())
		} else {
			_ = sleepCtx(ctx, p.lead)
			if err := s.fault(c, ctx); err != nil {
				r.fails = append(r.fails, "fault: "+err.Error())
			}
			_ = sleepCtx(ctx, p.outage)
			repairAt = time.Now()
			if err := s.repair(c, ctx); err != nil {
				r.fails = append(r.fails, "repair: "+err.Error())
			}
		}
	}
	<-waited // meshbench exits 1 whenever sends failed; the JSON is judged
	stopPoll()
	r.flaps = flaps()
	for name, n := range r.flaps {
		if n > 0 && !s.mayFlap[name] {
			r.fails = append(r.fails, fmt.Sprintf("replica %s /health/ready flapped %d× though nothing it depends on was touched", name, n))
		}
	}
	var rep benchReport
	b, err := os.ReadFile(jsonOut)
	if err == nil {
		err = json.Unmarshal(b, &rep)
	}
	if err != nil || rep.Delivery == nil {
		r.fails = append(r.fails, fmt.Sprintf("no meshbench report (%v); see %s", err, logPath))
		return r
	}
	d := rep.Delivery
	r.sent, r.acked, r.delivered, r.lost, r.dups, r.explained, r.unexplained = d.Attempted, d.Acked, d.Delivered, d.Lost, d.Duplicates, d.Explained, d.Unexplained
	if !repairAt.IsZero() {
		rec := 0.0
		if d.LastDisrupted > 0 {
			rec = max(0, float64(d.LastDisrupted-repairAt.UnixMilli())/1000)
		}
		r.recovery = fmt.Sprintf("%.1f", rec)
	}
	if rep.Error != "" {
		r.fails = append(r.fails, "meshbench: "+rep.Error)
	}
	if d.Acked == 0 {
		r.fails = append(r.fails, "no DM was acked: the load did not run")
	}
	if d.Lost > 0 {
		r.fails = append(r.fails, fmt.Sprintf("%d acked DMs lost", d.Lost))
	}
	if d.Unexplained > 0 {
		r.fails = append(r.fails, fmt.Sprintf("%d duplicates without a socket close (e.g. %s)", d.Unexplained, strings.Join(d.UnexplainedIDs, " ")))
	}
	if h := rep.Hostile; h != nil {
		r.notes = append(r.notes, fmt.Sprintf("hostile %d: %d rejected, %d unanswered", h.Sent, h.Rejected, h.Unanswered))
		if h.Accepted > 0 || h.Other > 0 {
			r.fails = append(r.fails, fmt.Sprintf("hostile: %d accepted, %d other outcomes %v", h.Accepted, h.Other, h.Outcomes))
		}
	} else if s.leak {
		r.fails = append(r.fails, "hostile phase did not report")
	}
	for _, k := range []string{"client reconnects", "slow consumers"} {
		if v := rep.Figures[k]; v != "" {
			r.notes = append(r.notes, k+" "+strings.SplitN(v, " ", 2)[0])
		}
	}
	if s.leak {
		r.fails = append(r.fails, c.checkLeak(ctx, base, &r.notes)...)
	}
	logf("chaos %s: done in %s: %d fail(s)", s.name, fmtDur(time.Since(t0)), len(r.fails))
	return r
}

func (c *cluster) replicaWS(name string) string {
	return fmt.Sprintf("ws://127.0.0.1:%d/ws", c.replicas[name].port)
}

func waitFile(ctx context.Context, path string, exited <-chan error) error {
	deadline := time.After(2 * time.Minute)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("meshbench exited before sending (%v)", err)
		case <-deadline:
			return fmt.Errorf("meshbench did not start sending within 2 min")
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pollReady polls /health/ready of each replica every 100 ms until ctx
// ends; the returned func gives, per replica, how often it went from 200
// to anything else (a refused connection included).
func (c *cluster) pollReady(ctx context.Context) func() map[string]int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	flaps := map[string]int{}
	for _, name := range replicaNames {
		url := fmt.Sprintf("http://127.0.0.1:%d/health/ready", c.replicas[name].port)
		wg.Add(1)
		go func() {
			defer wg.Done()
			up := true
			for ctx.Err() == nil {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				ok := httpStatus(rctx, url) == http.StatusOK
				cancel()
				if ctx.Err() != nil {
					return
				}
				if up && !ok {
					mu.Lock()
					flaps[name]++
					mu.Unlock()
				}
				up = ok
				_ = sleepCtx(ctx, 100*time.Millisecond)
			}
		}()
	}
	return func() map[string]int {
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for _, n := range replicaNames {
			out[n] = flaps[n]
		}
		return out
	}
}

// procStats is a replica's go_goroutines and process RSS from /metrics.
type procStats struct{ goroutines, rss float64 }

func (c *cluster) sampleStats(ctx context.Context) map[string]procStats {
	out := map[string]procStats{}
	for _, name := range replicaNames {
		st, err := scrape(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", c.replicas[name].port))
		if err == nil {
			out[name] = st
		}
	}
	return out
}

func scrape(ctx context.Context, url string) (procStats, error) {
	var st procStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "go_goroutines":
			st.goroutines, found = v, found+1
		case "process_resident_memory_bytes":
			st.rss, found = v, found+1
		}
	}
	if found != 2 {
		return st, errors.New("go_goroutines or process_resident_memory_bytes missing from /metrics")
	}
	return st, sc.Err()
}

// checkLeak waits up to leakSettle for every replica's goroutines to be
// back within leakGoroutines of base, then checks RSS.
func (c *cluster) checkLeak(ctx context.Context, base map[string]procStats, notes *[]string) []string {
	if len(base) != len(replicaNames) {
		return []string{fmt.Sprintf("leak: baseline /metrics unreadable (%d of %d replicas)", len(base), len(replicaNames))}
	}
	deadline := time.Now().Add(leakSettle)
	var now map[string]procStats
	for {
		now = c.sampleStats(ctx)
		ok := len(now) == len(replicaNames)
		for _, n := range replicaNames {
			ok = ok && now[n].goroutines <= base[n].goroutines+leakGoroutines
		}
		if ok || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		_ = sleepCtx(ctx, 500*time.Millisecond)
	}
	var fails []string
	for _, n := range replicaNames {
		b, a := base[n], now[n]
		*notes = append(*notes, fmt.Sprintf("%s goroutines %.0f→%.0f RSS %.0f→%.0f MiB", n, b.goroutines, a.goroutines, b.rss/(1<<20), a.rss/(1<<20)))
		if a.goroutines > b.goroutines+leakGoroutines {
			fails = append(fails, fmt.Sprintf("leak: replica %s goroutines %.0f → %.0f after %v", n, b.goroutines, a.goroutines, leakSettle))
		}
		if a.rss > b.rss*leakRSSFactor+leakRSSSlack {
			fails = append(fails, fmt.Sprintf("leak: replica %s RSS %.1f → %.1f MiB", n, b.rss/(1<<20), a.rss/(1<<20)))
		}
	}
	return fails
}

func renderChaos(w io.Writer, rows []chaosRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tsent\tacked\tdelivered\tlost\tduplicates (expl/unexpl)\trecovery s\treadiness flaps a/b\ttime\tverdict")
	for _, r := range rows {
		verdict := "ok"
		if len(r.fails) > 0 {
			verdict = "FAIL: " + strings.Join(r.fails, "; ")
		}
		if len(r.notes) > 0 {
			verdict += " (" + strings.Join(r.notes, "; ") + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d (%d/%d)\t%s\t%d/%d\t%s\t%s\n", r.name, r.sent, r.acked, r.delivered, r.lost,
			r.dups, r.explained, r.unexplained, r.recovery, r.flaps["a"], r.flaps["b"], fmtDur(r.dur), verdict)
	}
	tw.Flush()
}
