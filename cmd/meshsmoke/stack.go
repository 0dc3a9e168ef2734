package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Fault controls for the chaos suite (chaos.go): stop and restart
// nats-server on the same port, PostgreSQL on the same data directory and
// port (scripts/pg.sh), and a replica (kill -9, then the same config as a
// new generation, startReplica).

// stopNATS sends SIGTERM to nats-server and waits for it to exit.
func (c *cluster) stopNATS(ctx context.Context) error {
	c.mu.Lock()
	p := c.nats
	c.mu.Unlock()
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	c.logf("stopped nats-server (SIGTERM pid %d)", p.cmd.Process.Pid)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.wait(wctx); err != nil && !p.exited() {
		p.kill()
	}
	return nil
}

// restartNATS starts nats-server again on its port.
func (c *cluster) restartNATS(ctx context.Context) error {
	u, err := url.Parse(c.natsURL)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return err
	}
	c.logf("restarting nats-server on port %d", port)
	return c.startNATS(ctx, port)
}

// stopPostgres stops the server (pg_ctl -m fast), keeping its data.
func (c *cluster) stopPostgres(ctx context.Context) error {
	c.logf("stopping PostgreSQL (%s stop %s)", c.opts.pgScript, c.pgDir)
	out, err := exec.CommandContext(ctx, c.opts.pgScript, "stop", c.pgDir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg.sh stop: %v: %s", err, out)
	}
	return nil
}

// restartPostgres starts the same data directory on the same port, so
// the replicas' DATABASE_URL stays valid.
func (c *cluster) restartPostgres(ctx context.Context) error {
	u, err := url.Parse(c.dsn)
	if err != nil {
		return err
	}
	c.logf("restarting PostgreSQL on port %s", u.Port())
	cmd := exec.CommandContext(ctx, c.opts.pgScript, "start", c.pgDir)
	cmd.Env = append(os.Environ(), "PGPORT_WANTED="+u.Port())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("pg.sh start: %v: %s", err, stderr.String())
	}
	if got := strings.TrimSpace(string(out)); got != c.dsn {
		return fmt.Errorf("PostgreSQL came back as %s, not %s", got, c.dsn)
	}
	return nil
}
