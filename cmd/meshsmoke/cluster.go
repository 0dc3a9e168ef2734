package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshd/meshd"
)

// cluster is everything a run starts: PostgreSQL (scripts/pg.sh), one
// nats-server, two meshd replicas and HAProxy in front of them, all under
// one temporary directory that close removes.
type cluster struct {
	opts options
	logf func(string, ...any)

	dir       string // immutable after startCluster
	pgDir     string
	dsn       string
	natsURL   string
	prefix    string // NATS subject prefix of this run
	haproxy   string // binary
	lbPort    int
	statsPort int

	mu       sync.Mutex
	nats     *proc               // guarded by mu
	lb       *proc               // guarded by mu
	replicas map[string]*replica // guarded by mu; the map itself is immutable after startCluster
	pgUp     bool                // guarded by mu

	closeOnce sync.Once
}

// replica is one meshd server slot; each start is a new generation with a
// new MESHD_NODE_ID, as a rescheduled pod would get.
type replica struct {
	name string // "a" or "b": HAProxy server name and cookie value
	port int
	gen  int   // guarded by cluster.mu
	p    *proc // guarded by cluster.mu
}

func (r *replica) nodeID() string { return fmt.Sprintf("smoke-%s-%d", r.name, r.gen) }

var replicaNames = []string{"a", "b"}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func freePorts(n int) ([]int, error) {
	out := make([]int, 0, n)
	seen := map[int]bool{}
	for len(out) < n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// startCluster brings everything up. On error the caller still calls
// close, which tears down whatever did start.
func startCluster(ctx context.Context, c *cluster) error {
	dir, err := os.MkdirTemp("", "meshsmoke-")
	if err != nil {
		return err
	}
	c.dir = dir
	// As root, scripts/pg.sh runs PostgreSQL as another user, which must
	// be able to reach its data directory inside ours.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	c.logf("run directory %s", dir)
	if c.haproxy, err = ensureHAProxy(ctx, filepath.Join(dir, "apt.log"), c.logf); err != nil {
		return err
	}
	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	natsPort := ports[0]
	c.lbPort, c.statsPort = ports[1], ports[2]
	c.replicas = map[string]*replica{"a": {name: "a", port: ports[3]}, "b": {name: "b", port: ports[4]}}
	c.prefix = "smoke" + meshd.NewID()[:8]
	if err := c.startPostgres(ctx); err != nil {
		return err
	}
	if err := c.startNATS(ctx, natsPort); err != nil {
		return err
	}
	errs := make(chan error, len(replicaNames))
	for _, name := range replicaNames {
		go func() { errs <- c.startReplica(ctx, name) }()
	}
	for range replicaNames {
		err = errors.Join(err, <-errs)
	}
	if err != nil {
		return err
	}
	return c.startLB(ctx)
}

func (c *cluster) startPostgres(ctx context.Context) error {
	c.pgDir = filepath.Join(c.dir, "pg")
	c.logf("starting PostgreSQL (%s start %s)", c.opts.pgScript, c.pgDir)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute) // may apt-get install postgresql
	defer cancel()
	cmd := exec.CommandContext(ctx, c.opts.pgScript, "start", c.pgDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	c.mu.Lock()
	c.pgUp = true // stop is harmless if start failed half way
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("postgres: %s start: %v\n%s", c.opts.pgScript, err, stderr.String())
	}
	c.dsn = strings.TrimSpace(string(out))
	return nil
}

func (c *cluster) startNATS(ctx context.Context, port int) error {
	bin := filepath.Join(c.opts.binDir, "nats-server")
	p, err := startProc("nats", filepath.Join(c.dir, "nats.log"), os.Environ(), bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("nats-server: %w (build it: go build -o bin/nats-server github.com/nats-io/nats-server/v2)", err)
	}
	c.mu.Lock()
	c.nats = p
	c.mu.Unlock()
	c.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	return waitFor(ctx, 15*time.Second, p, "nats-server accepting connections", func(ctx context.Context) bool {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

func (c *cluster) replicaEnv(r *replica) []string {
	return append(os.Environ(),
		"DATABASE_URL="+c.dsn,
		"NATS_URL="+c.natsURL,
		"NATS_SUBJECT_PREFIX="+c.prefix,
		"BROKER_HOST=127.0.0.1",
		"BROKER_PORT="+strconv.Itoa(r.port),
		"MESHD_NODE_ID="+r.nodeID(),
		// Traffic steps send hundreds of DMs a second per member; the
		// default 60/min would turn the test into a rate-limit test.
		"SEND_RATE_BURST=100000",
		"SEND_RATE_PER_MIN=6000000",
		// Every client here shares 127.0.0.1 (and HAProxy's address), so
		// the per-IP pre-hello cap would turn a 2,000-client storm into a
		// test of that cap.
		"MAX_PREAUTH_PER_IP=100000",
		// The chaos hostile phase and the storms re-hello the same members
		// hundreds of times; the per-member hello budget is tested by the
		// broker's own tests, not here.
		"HELLO_RATE_BURST=100000",
		"HELLO_RATE_PER_MIN=1000000",
		"LOG_LEVEL="+c.opts.logLevel,
	)
}

// startReplica starts a new generation of replica name and waits until it
// reports ready on its own port (not through the load balancer).
func (c *cluster) startReplica(ctx context.Context, name string) error {
	c.mu.Lock()
	r := c.replicas[name]
	if r.p != nil && !r.p.exited() {
		c.mu.Unlock()
		return fmt.Errorf("replica %s is already running", name)
	}
	r.gen++
	node := r.nodeID()
	p, err := startProc("meshd-"+name, filepath.Join(c.dir, "meshd-"+name+".log"), c.replicaEnv(r),
		filepath.Join(c.opts.binDir, "meshd"), "serve")
	if err == nil {
		r.p = p
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("meshd %s: %w", name, err)
	}
	c.logf("started replica %s (node %s, port %d, pid %d)", name, node, r.port, p.cmd.Process.Pid)
	url := fmt.Sprintf("http://127.0.0.1:%d/health/ready", r.port)
	return waitFor(ctx, 60*time.Second, p, "replica "+name+" /health/ready", func(ctx context.Context) bool {
		return httpStatus(ctx, url) == http.StatusOK
	})
}

func (c *cluster) proc(name string) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replicas[name].p
}

// running reports whether replica name's process is alive.
func (c *cluster) running(name string) bool {
	p := c.proc(name)
	return p != nil && !p.exited()
}

// kill9 SIGKILLs replica name and returns the moment it was sent.
func (c *cluster) kill9(name string) (time.Time, error) {
	p := c.proc(name)
	if p == nil {
		return time.Time{}, fmt.Errorf("replica %s is not running", name)
	}
	at := time.Now()
	if err := p.signal(syscall.SIGKILL); err != nil {
		return at, err
	}
	c.logf("kill -9 replica %s (pid %d)", name, p.cmd.Process.Pid)
	<-p.done
	return at, nil
}

// terminate sends SIGTERM to replica name and waits up to budget for it
// to exit; it SIGKILLs a replica that overruns. It returns when the signal
// was sent and the exit code.
func (c *cluster) terminate(ctx context.Context, name string, budget time.Duration) (time.Time, time.Duration, int, error) {
	p := c.proc(name)
	if p == nil {
		return time.Time{}, 0, 0, fmt.Errorf("replica %s is not running", name)
	}
	at := time.Now()
	if err := p.signal(syscall.SIGTERM); err != nil {
		return at, 0, 0, err
	}
	c.logf("SIGTERM replica %s (pid %d)", name, p.cmd.Process.Pid)
	wctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	if err := p.wait(wctx); err != nil && !p.exited() {
		p.kill()
		return at, time.Since(at), p.exitCode(), fmt.Errorf("replica %s did not exit within %v of SIGTERM (killed)", name, budget)
	}
	return at, time.Since(at), p.exitCode(), nil
}

// ensureRunning restarts any replica that is down and waits until HAProxy
// routes to both, so a step never starts on a half cluster because an
// earlier one failed.
func (c *cluster) ensureRunning(ctx context.Context) error {
	for _, name := range replicaNames {
		if !c.running(name) {
			if err := c.startReplica(ctx, name); err != nil {
				return err
			}
		}
	}
	return c.waitLB(ctx, map[string]bool{"a": true, "b": true}, 20*time.Second)
}

func (c *cluster) startLB(ctx context.Context) error {
	cfg := renderHAProxy(lbConfig{ListenPort: c.lbPort, StatsPort: c.statsPort,
		Servers: []lbServer{{"a", c.replicas["a"].port}, {"b", c.replicas["b"].port}}})
	path := filepath.Join(c.dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, c.haproxy, "-c", "-f", path).CombinedOutput(); err != nil {
		return fmt.Errorf("haproxy -c rejected %s: %v\n%s", path, err, out)
	}
	p, err := startProc("haproxy", filepath.Join(c.dir, "haproxy.log"), os.Environ(), c.haproxy, "-db", "-f", path)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.lb = p
	c.mu.Unlock()
	c.logf("started haproxy on 127.0.0.1:%d (stats :%d)", c.lbPort, c.statsPort)
	return c.waitLB(ctx, map[string]bool{"a": true, "b": true}, 20*time.Second)
}

// waitLB waits until HAProxy reports each named server UP (true) or DOWN
// (false).
func (c *cluster) waitLB(ctx context.Context, want map[string]bool, budget time.Duration) error {
	c.mu.Lock()
	lb := c.lb
	c.mu.Unlock()
	var last map[string]string
	err := waitFor(ctx, budget, lb, fmt.Sprintf("haproxy servers %v", want), func(ctx context.Context) bool {
		st, err := lbStates(ctx, c.statsPort)
		if err != nil {
			return false
		}
		last = st
		for name, up := range want {
			if (st[name] == "UP") != up || (!up && !strings.HasPrefix(st[name], "DOWN")) {
				return false
			}
		}
		return true
	})
	if err != nil && last != nil {
		err = fmt.Errorf("%w (last states %v)", err, last)
	}
	return err
}

func (c *cluster) wsURL() string { return fmt.Sprintf("ws://127.0.0.1:%d/ws", c.lbPort) }

// logFiles lists the logs worth showing on failure.
func (c *cluster) logFiles() []string {
	return []string{"meshd-a.log", "meshd-b.log", "haproxy.log", "nats.log"}
}

// close stops every process this run started and removes the run
// directory (unless -keep). Safe to call more than once.
func (c *cluster) close() {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		procs := []*proc{c.lb}
		for _, name := range replicaNames {
			if r := c.replicas[name]; r != nil {
				procs = append(procs, r.p)
			}
		}
		procs = append(procs, c.nats)
		pgUp := c.pgUp
		c.mu.Unlock()
		for _, p := range procs {
			p.kill()
		}
		if pgUp {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_ = exec.CommandContext(ctx, c.opts.pgScript, "stop", c.pgDir).Run()
			cancel()
		}
		if c.dir == "" {
			return
		}
		if c.opts.keep {
			c.logf("kept run directory %s", c.dir)
			return
		}
		_ = os.RemoveAll(c.dir)
	})
}

// waitFor polls cond every 100 ms until it holds, budget passes, ctx ends
// or p (if non-nil) exits.
func waitFor(parent context.Context, budget time.Duration, p *proc, what string, cond func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(parent, budget)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		ok := cond(pctx)
		pcancel()
		if ok {
			return nil
		}
		var exited <-chan struct{}
		if p != nil {
			exited = p.done
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("waiting for %s: %w", what, context.Cause(parent))
			}
			return fmt.Errorf("timed out after %v waiting for %s", budget, what)
		case <-exited:
			return fmt.Errorf("%s exited (%v) while waiting for %s", p.name, p.err, what)
		case <-t.C:
		}
	}
}

func httpStatus(ctx context.Context, url string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
