// Command meshbench is meshd's load tool (issue 10): it enrolls members
// through a broker's public HTTP routes (a bearer token, mesh create,
// invites, POST /join), connects real WebSocket clients from the client
// package spread over one or more broker URLs, sends crypto_box-encrypted
// DMs with client_ack on, and reports delivery, duplicates, latency,
// throughput, hello rate and broker RSS.
//
//	meshbench burst  --url ws://a/ws --url ws://b/ws --token T [--peers 100 --msgs 1000 --window 32]
//	meshbench steady --url ws://a/ws --url ws://b/ws --token T [--rate 1000 --duration 20s]
//	meshbench idle   --url ... --token T [--conns 2000 --pid 123 --pid 456]
//	meshbench storm  --url ws://lb/ws --token T [--conns 2000 --kill-cmd 'kill -9 123']
//
// Progress goes to stderr, a table to stdout (--json: one JSON object).
// Exit status: 0 when the run completed and met its delivery contract
// (nothing lost, no duplicates, everyone reattached), 1 otherwise, 2 on
// bad flags. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage: meshbench <burst|steady|idle|storm> --url <ws url> [--url …] --token <bearer> [flags]
run 'meshbench <mode> -h' for the flags of a mode; docs/benchmarks.md explains the figures
`

// modes maps a mode name to its workload.
var modes = map[string]func(context.Context, *bench) error{
	"burst":  runBurst,
	"steady": runSteady,
	"idle":   runIdle,
	"storm":  runStorm,
}

// run is main without the process: tests drive it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || modes[args[0]] == nil {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cfg, err := parseConfig(args[0], args[1:], getenv, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "meshbench: %v\n", err)
		}
		return 2
	}
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "meshbench: --cpuprofile: %v\n", err)
			return 2
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	b := newBench(cfg, stderr)
	defer b.close()
	runErr := b.execute(ctx, modes[cfg.Mode])
	rep := b.report(runErr)
	if err := rep.save(stdout, cfg); err != nil {
		fmt.Fprintf(stderr, "meshbench: %v\n", err)
		return 1
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "meshbench: %v\n", runErr)
		return 1
	}
	if len(rep.Problems) > 0 {
		return 1
	}
	return 0
}
