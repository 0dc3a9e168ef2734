package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// runExec starts the cluster, runs command against it and returns its
// exit status (1 when the cluster did not start).
func runExec(ctx context.Context, c *cluster, command string, stdout, stderr io.Writer, logf func(string, ...any)) int {
	if err := startCluster(ctx, c); err != nil {
		logf("cluster did not start: %v", err)
		printLogs(stderr, c)
		return 1
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = append(os.Environ(), c.execEnv()...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	logf("running %q", command)
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		logf("%q exited %d", command, ee.ExitCode())
		return ee.ExitCode()
	}
	logf("%q: %v", command, err)
	return 1
}

// execEnv describes the running cluster to an -exec command.
func (c *cluster) execEnv() []string {
	env := []string{
		"MESHSTACK_DATABASE_URL=" + c.dsn,
		"MESHSTACK_LB_URL=" + c.wsURL(),
		"MESHSTACK_NATS_URL=" + c.natsURL,
		"MESHSTACK_BIN=" + c.opts.binDir,
		"MESHSTACK_DIR=" + c.dir,
	}
	for _, name := range replicaNames {
		up := "MESHSTACK_" + strings.ToUpper(name)
		env = append(env, fmt.Sprintf("%s_URL=ws://127.0.0.1:%d/ws", up, c.replicas[name].port),
			up+"_PID="+strconv.Itoa(c.proc(name).cmd.Process.Pid))
	}
	return env
}
