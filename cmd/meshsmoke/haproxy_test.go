package main

import (
	"strings"
	"testing"
	"time"
)

func TestRenderHAProxy(t *testing.T) {
	cfg := renderHAProxy(lbConfig{ListenPort: 8000, StatsPort: 8001,
		Servers: []lbServer{{"a", 9001}, {"b", 9002}}, CheckInterval: 400 * time.Millisecond})
	// Each line is a requirement of the smoke test (issue 5, brief): sticky
	// cookie, readiness checks, WebSocket-friendly timeouts, both servers,
	// retries that move an upgrade off a dead or draining replica.
	for _, want := range []string{
		"\tbind 127.0.0.1:8000\n",
		"\tcookie cm_node insert indirect nocache\n",
		"\toption httpchk GET /health/ready\n",
		"\thttp-check expect status 200\n",
		"\ttimeout tunnel 1h\n",
		"\toption redispatch 1\n",
		"\tretry-on conn-failure empty-response 503\n",
		"\tdefault-server inter 400 fastinter 200 downinter 400 rise 2 fall 2\n",
		"\tserver a 127.0.0.1:9001 check cookie a\n",
		"\tserver b 127.0.0.1:9002 check cookie b\n",
		"listen stats\n\tbind 127.0.0.1:8001\n\tstats enable\n\tstats uri /stats\n",
		"backend meshd\n",
		"default_backend meshd\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	// Sections start at column 0, their keywords are indented.
	for _, line := range strings.Split(cfg, "\n") {
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "\t") {
			continue
		}
		switch strings.Fields(line)[0] {
		case "global", "defaults", "frontend", "backend", "listen":
		default:
			t.Errorf("unindented non-section line %q", line)
		}
	}
}

func TestRenderHAProxyDefaultInterval(t *testing.T) {
	cfg := renderHAProxy(lbConfig{ListenPort: 1, StatsPort: 2})
	if !strings.Contains(cfg, "inter 500 fastinter 250 downinter 500") {
		t.Fatalf("zero CheckInterval should mean 500 ms:\n%s", cfg)
	}
	if strings.Contains(cfg, "\tserver ") {
		t.Fatalf("no servers given but config has some:\n%s", cfg)
	}
}

// A trimmed copy of HAProxy 2.6's "/stats;csv" output.
const statsCSV = `# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight
meshd_in,FRONTEND,,,0,1,4096,3,0,0,0,0,0,,,,,OPEN,
meshd,a,0,0,0,1,,2,0,0,,0,,0,0,0,0,UP,1
meshd,b,0,0,0,1,,1,0,0,,0,,0,0,0,0,DOWN 1/2,1
meshd,BACKEND,0,0,0,1,410,3,0,0,0,0,,0,0,0,0,UP,2
stats,FRONTEND,,,1,1,4096,2,0,0,0,0,0,,,,,OPEN,
stats,BACKEND,0,0,0,0,410,0,0,0,0,0,,0,0,0,0,UP,0
`

func TestParseStats(t *testing.T) {
	got, err := parseStats(strings.NewReader(statsCSV), "meshd")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["a"] != "UP" || got["b"] != "DOWN 1/2" {
		t.Fatalf("got %v", got)
	}
}

func TestParseStatsRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":     "",
		"no header": "meshd,a,UP\n",
		"no status": "# pxname,svname,scur\nmeshd,a,0\n",
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := parseStats(strings.NewReader(in), "meshd"); err == nil {
				t.Fatalf("want error, got %v", got)
			}
		})
	}
}
