// Command meshsmoke is the two-replica smoke test of issue 5 (`make
// smoke`): it starts a throwaway PostgreSQL (scripts/pg.sh), one
// nats-server process, two meshd replicas and HAProxy with a sticky cookie
// in front of them, enrolls members straight through the store, and proves
// as named steps that
//
//  1. a DM to a peer on the other replica is delivered and decrypts;
//  2. subscribe on A, publish on B is delivered (streams, B.14.2);
//  3. kill -9 of replica A under load: every client reattaches within 10 s
//     and no acked message is lost;
//  4. the audit chain verifies after concurrent writes from both replicas
//     (`meshd audit verify --mesh <id>`, B.8);
//  5. a rolling restart (SIGTERM, restart, each replica in turn) under
//     steady traffic loses nothing.
//
// It prints a summary table, the measured failover and rolling-restart
// figures, and exits 1 if any step failed (2 on bad flags). Every process
// it started is stopped and the run directory removed on exit, also on
// failure, timeout or SIGINT.
//
//	meshsmoke [-bin bin] [-clients 50] [-rate 5] [-timeout 5m] [-steps 1,2,3,4,5] [-short] [-keep]
//
// With -exec CMD it runs no step: it starts the same cluster, runs CMD
// with sh -c and the cluster in MESHSTACK_* variables (see execEnv), stops
// everything and exits with CMD's status. `make bench-load` uses it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-sigs
		cancel(fmt.Errorf("interrupted by %v", sig))
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel(nil)
	os.Exit(code)
}

// options are the command-line flags.
type options struct {
	binDir   string
	pgScript string
	clients  int
	rate     float64
	timeout  time.Duration
	steps    []int
	keep     bool
	logLevel string
	// phase is the length of each traffic phase (warm-up before a kill,
	// steady traffic between restarts).
	phase time.Duration
	exec  string // run this command against the cluster instead of the steps
	chaos bool   // run the chaos suite (chaos.go) instead of the steps
	full  bool   // with chaos: the long form
	// scenarios are the chaos scenarios to run (chaos.go keys).
	scenarios []string
}

// defaultChaos are the scenarios `make chaos` runs: all of them.
const defaultChaos = "kill,nats,pg,slow,hostile"

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("meshsmoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.binDir, "bin", "bin", "directory holding the meshd and nats-server binaries")
	fs.StringVar(&o.pgScript, "pg", "scripts/pg.sh", "throwaway PostgreSQL script (start DIR prints its URL; stop DIR)")
	fs.IntVar(&o.clients, "clients", 50, "clients in the failover and rolling-restart steps (even, ≥ 4)")
	fs.Float64Var(&o.rate, "rate", 5, "DMs per second each traffic client sends")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "overall time limit")
	fs.DurationVar(&o.phase, "phase", 2*time.Second, "length of each steady-traffic phase")
	steps := fs.String("steps", "1,2,3,4,5", "comma-separated steps to run")
	short := fs.Bool("short", false, "quick run: 10 clients, 1 s phases")
	fs.BoolVar(&o.keep, "keep", false, "keep the run directory (logs, haproxy.cfg) after exit")
	fs.StringVar(&o.logLevel, "log-level", "info", "LOG_LEVEL of the meshd replicas")
	fs.StringVar(&o.exec, "exec", "", "start the cluster, run this shell command with MESHSTACK_* set, stop (no steps)")
	fs.BoolVar(&o.chaos, "chaos", false, "run the chaos suite (docs/chaos.md) instead of the steps")
	fs.BoolVar(&o.full, "full", false, "with -chaos: longer outages and load (make chaos FULL=1)")
	chaosSel := fs.String("scenarios", defaultChaos, "with -chaos: comma-separated scenarios (kill,nats,pg,slow,hostile)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, k := range strings.Split(*chaosSel, ",") {
		if k = strings.TrimSpace(k); !slices.ContainsFunc(scenarios, func(s scenario) bool { return s.key == k }) {
			return o, fmt.Errorf("-scenarios: unknown scenario %q", k)
		}
		o.scenarios = append(o.scenarios, k)
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *short {
		o.clients, o.phase = 10, time.Second
	}
	for _, s := range strings.Split(*steps, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > len(stepDefs) {
			return o, fmt.Errorf("-steps: %q is not a step number 1-%d", s, len(stepDefs))
		}
		o.steps = append(o.steps, n)
	}
	if o.clients < 4 || o.clients%2 != 0 {
		return o, fmt.Errorf("-clients must be even and at least 4 (got %d)", o.clients)
	}
	if o.rate <= 0 || o.timeout <= 0 || o.phase <= 0 {
		return o, fmt.Errorf("-rate, -timeout and -phase must be positive")
	}
	return o, nil
}

// run is main without the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintf(stderr, "meshsmoke: %v\n", err)
		}
		return 2
	}
	start := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "meshsmoke [%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	ctx, cancel := context.WithTimeoutCause(ctx, o.timeout, fmt.Errorf("overall timeout %v", o.timeout))
	defer cancel()
	c := &cluster{opts: o, logf: logf}
	defer c.close()
	// Last resort: if a step ignores its context, the cleanup still runs
	// and the process still ends shortly after the overall timeout.
	watchdog := time.AfterFunc(o.timeout+30*time.Second, func() {
		logf("watchdog: still running 30 s past the overall timeout; cleaning up and exiting")
		c.close()
		os.Exit(1)
	})
	defer watchdog.Stop()
	if o.exec != "" {
		return runExec(ctx, c, o.exec, stdout, stderr, logf)
	}
	if o.chaos {
		return runChaos(ctx, c, o, stdout, logf)
	}

	results, figs := runAll(ctx, c, o, logf)
	fmt.Fprintln(stdout)
	renderTable(stdout, results)
	fmt.Fprintln(stdout)
	figs.print(stdout)
	if miss := missingFeatures(results); len(miss) > 0 {
		fmt.Fprintf(stdout, "steps failing for a missing broker feature: %s\n", strings.Join(miss, ", "))
	}
	fmt.Fprintf(stdout, "total %s\n", fmtDur(time.Since(start)))
	if failed(results) {
		printLogs(stdout, c)
		return 1
	}
	return 0
}

// runAll starts the cluster and runs the selected steps; a setup failure
// is reported as a failed "setup" row.
func runAll(ctx context.Context, c *cluster, o options, logf func(string, ...any)) ([]result, *figures) {
	figs := &figures{}
	t0 := time.Now()
	setup := result{Step: "0 setup: pg, nats, 2×meshd, haproxy"}
	e, err := newEnv(ctx, c, o, logf, figs)
	setup.Duration = time.Since(t0)
	if err != nil {
		setup.Notes = err.Error()
		return []result{setup}, figs
	}
	defer e.close()
	setup.Pass = true
	setup.Notes = fmt.Sprintf("lb ws://127.0.0.1:%d/ws, replicas :%d :%d", c.lbPort, c.replicas["a"].port, c.replicas["b"].port)
	results := []result{setup}
	for i, def := range stepDefs {
		r := result{Step: def.name}
		if !slices.Contains(o.steps, i+1) {
			r.Skipped, r.Notes = true, "not selected (-steps)"
			results = append(results, r)
			continue
		}
		results = append(results, e.runStep(ctx, def))
	}
	return results, figs
}

// printLogs shows the last lines of every process log after a failure.
func printLogs(w io.Writer, c *cluster) {
	if c.dir == "" {
		return
	}
	for _, name := range c.logFiles() {
		t := tail(c.dir+"/"+name, 25)
		if t == "" {
			continue
		}
		fmt.Fprintf(w, "\n--- last lines of %s ---\n%s\n", name, t)
	}
}
