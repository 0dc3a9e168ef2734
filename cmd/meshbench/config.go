package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Config is one meshbench run. Flags fill it; MESHBENCH_TOKEN supplies
// Token when --token is not given.
type Config struct {
	Mode  string
	URLs  []string // broker WebSocket URLs; clients are spread over them
	Token string   // bearer token of the user that creates the meshes
	JSON  bool
	// JSONOut also writes the JSON report to this file.
	JSONOut    string
	CPUProfile string // --cpuprofile: this process's CPU profile

	Peers    int           // burst/steady: connected members
	Msgs     int           // burst: DMs per peer
	Window   int           // burst: unacked sends per peer
	Rate     float64       // steady: offered msg/s (all senders together)
	Duration time.Duration // steady: how long to offer load
	Conns    int           // idle/storm: connections held
	MeshSize int           // members per mesh (MAX_CONNECTIONS_PER_MESH)
	Dials    int           // concurrent dials (hellos in flight)
	Joins    int           // concurrent POST /join calls
	PIDs     []int         // broker PIDs whose RSS is read from /proc
	KillCmd  string        // storm: shell command that kills a replica
	Hold     time.Duration // idle: how long connections are held before RSS is read
	Drain    time.Duration // burst/steady: wait for pushes after the last send
	Reattach time.Duration // storm: budget for every client to come back
	Progress time.Duration // stderr progress period
	Payload  int           // plaintext bytes per DM (at least the header)

	// steady only, for the chaos suite (docs/chaos.md):
	Slow      int           // the last Slow members read their socket slowly
	SlowBPS   int           // bytes/s a slow consumer reads while the load runs
	Hostile   int           // hostile frames interleaved with the load
	ReadyFile string        // created when the first DM is sent
	Disrupt   time.Duration // a DM pushed later than this after its schedule counts as disrupted
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

// pids is a repeatable (or comma-separated) integer flag.
type pids []int

func (p *pids) String() string { return fmt.Sprint(*p) }
func (p *pids) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a PID", f)
		}
		*p = append(*p, n)
	}
	return nil
}

func parseConfig(mode string, args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Config{Mode: mode}
	fs := flag.NewFlagSet("meshbench "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var urls multi
	var ps pids
	fs.Var(&urls, "url", "broker WebSocket URL, ws://host:port/ws (repeat for several replicas)")
	fs.StringVar(&c.Token, "token", getenv("MESHBENCH_TOKEN"), "bearer token (`meshd token create --user <id>`); default $MESHBENCH_TOKEN")
	fs.BoolVar(&c.JSON, "json", false, "print the report as one JSON object")
	fs.StringVar(&c.JSONOut, "json-out", "", "also write the JSON report to this file")
	fs.StringVar(&c.CPUProfile, "cpuprofile", "", "write meshbench's own CPU profile to this file (go tool pprof): on a small machine the load tool competes with the broker")
	fs.IntVar(&c.Peers, "peers", defPeers(mode), "burst/steady: connected members")
	fs.IntVar(&c.Msgs, "msgs", 1000, "burst: DMs each peer sends")
	fs.IntVar(&c.Window, "window", 32, "burst: unacked sends per peer")
	fs.Float64Var(&c.Rate, "rate", 1000, "steady: offered DMs per second")
	fs.DurationVar(&c.Duration, "duration", 20*time.Second, "steady: how long to offer load")
	fs.IntVar(&c.Conns, "conns", 2000, "idle/storm: connections")
	fs.IntVar(&c.MeshSize, "mesh-size", 100, "members per mesh (keep ≤ the broker's MAX_CONNECTIONS_PER_MESH)")
	fs.IntVar(&c.Dials, "dials", 64, "concurrent dials (hellos in flight)")
	fs.IntVar(&c.Joins, "joins", 16, "concurrent POST /join calls while enrolling")
	fs.Var(&ps, "pid", "broker PID whose RSS is sampled from /proc (repeat or comma-separate)")
	fs.StringVar(&c.KillCmd, "kill-cmd", "", "storm: shell command (sh -c) that kills a replica, e.g. 'kill -9 1234'")
	fs.DurationVar(&c.Hold, "hold", 5*time.Second, "idle: hold the connections this long before reading RSS")
	fs.DurationVar(&c.Drain, "drain", 60*time.Second, "burst/steady: wait this long after the last send for pushes")
	fs.DurationVar(&c.Reattach, "reattach", 60*time.Second, "storm: budget for every client to reattach")
	fs.DurationVar(&c.Progress, "progress", 2*time.Second, "progress line period on stderr")
	fs.IntVar(&c.Payload, "payload", 64, "plaintext bytes per DM")
	fs.IntVar(&c.Slow, "slow", 0, "steady: the last N members are slow consumers (half the senders address them)")
	fs.IntVar(&c.SlowBPS, "slow-bps", 4000, "steady: bytes/s a slow consumer reads from its socket while the load runs")
	fs.IntVar(&c.Hostile, "hostile", 0, "steady: hostile frames/hellos interleaved with the load")
	fs.StringVar(&c.ReadyFile, "ready-file", "", "steady: create this file when the first DM is sent")
	fs.DurationVar(&c.Disrupt, "disrupt", time.Second, "steady: e2e latency past which a DM counts as disrupted (recovery figure)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	c.URLs, c.PIDs = urls, ps
	return c, c.validate()
}

func defPeers(mode string) int {
	if mode == "steady" {
		return 20
	}
	return 100
}

func (c Config) validate() error {
	var errs []error
	if len(c.URLs) == 0 {
		errs = append(errs, errors.New("--url is required"))
	}
	for _, u := range c.URLs {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "ws" && p.Scheme != "wss") || p.Host == "" {
			errs = append(errs, fmt.Errorf("--url %q is not a ws:// or wss:// URL", u))
		}
	}
	if c.Token == "" {
		errs = append(errs, errors.New("--token (or MESHBENCH_TOKEN) is required: create one with `meshd token create --user bench`"))
	}
	pos := map[string]float64{"--peers": float64(c.Peers), "--msgs": float64(c.Msgs), "--window": float64(c.Window),
		"--rate": c.Rate, "--conns": float64(c.Conns), "--dials": float64(c.Dials), "--joins": float64(c.Joins),
		"--duration": float64(c.Duration), "--progress": float64(c.Progress)}
	for name, v := range pos {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.Slow < 0 || c.Hostile < 0 || c.SlowBPS <= 0 || c.Disrupt <= 0 {
		errs = append(errs, errors.New("--slow and --hostile must be ≥ 0, --slow-bps and --disrupt positive"))
	}
	if c.Slow > 0 && c.Slow*2 > c.Peers {
		errs = append(errs, errors.New("--slow must be at most half of --peers"))
	}
	if c.MeshSize < 2 {
		errs = append(errs, errors.New("--mesh-size must be at least 2"))
	}
	if c.Mode == "storm" && c.KillCmd == "" {
		errs = append(errs, errors.New("storm needs --kill-cmd"))
	}
	if (c.Mode == "burst" || c.Mode == "steady") && c.Peers < 2 {
		errs = append(errs, errors.New("--peers must be at least 2"))
	}
	return errors.Join(errs...)
}
