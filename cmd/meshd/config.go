package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshd/meshd/internal/seal"
)

// config is meshd's environment (docs/env-vars.md lists every variable; a
// test keeps the two in step).
type config struct {
	DatabaseURL             string
	NATSURL                 string
	SubjectPrefix           string
	Host                    string
	Port                    int
	NodeID                  string
	MaxMessageBytes         int
	MaxConnectionsPerMesh   int
	MaxConnectionsPerMember int
	HelloBurst              int
	HelloPerMinute          int
	HookFreshWindow         time.Duration
	SendBurst               int
	LegacyAuth              bool
	PublicURL               string
	PublicHTTPURL           string // BROKER_PUBLIC_URL, else derived from BROKER_URL: webhook URLs
	AppURL                  string
	HookRateLimitPerMin     int
	HookRateLimitPerIP      int
	CORSAllowedOrigins      []string
	ReadHeaderTimeout       time.Duration
	ReadTimeout             time.Duration
	IdleTimeout             time.Duration
	MaxPreauthPerIP         int
	HelloConcurrency        int
	Env                     string        // MESHD_ENV: "production" refuses to run without a key
	Keyring                 *seal.Keyring // BROKER_ENCRYPTION_KEY (+ _KEYS_PREVIOUS); nil when unset
	StatusTTL               time.Duration
	JSONLDir                string
	ExpectedMigration       string
	SendPerMinute           int
	PushWindow              int
	SlowConsumerAfter       time.Duration
	CanaryStallAfter        time.Duration
	LogLevel                string
	SkipMigrate             bool
	GitSHA                  string
	MetricsAddr             string // METRICS_ADDR: /metrics on its own listener, off the public port
	PprofAddr               string // PPROF_ADDR: net/http/pprof on its own listener; "" = off
}

var dsnRe = regexp.MustCompile(`^postgres(ql)?://`)

// loadConfig reads and validates the environment; every error names the
// variable and what was wrong with it.
func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		DatabaseURL:       getenv("DATABASE_URL"),
		NATSURL:           getenv("NATS_URL"),
		SubjectPrefix:     orDefault(getenv("NATS_SUBJECT_PREFIX"), "meshd"),
		Host:              orDefault(getenv("BROKER_HOST"), "0.0.0.0"),
		NodeID:            getenv("MESHD_NODE_ID"),
		LogLevel:          orDefault(getenv("LOG_LEVEL"), "info"),
		SkipMigrate:       getenv("BROKER_SKIP_MIGRATE") == "1",
		GitSHA:            getenv("GIT_SHA"),
		LegacyAuth:        getenv("BROKER_LEGACY_AUTH") == "1",
		PublicURL:         getenv("BROKER_URL"),
		AppURL:            getenv("APP_URL"),
		JSONLDir:          getenv("JSONL_STATUS_DIR"),
		ExpectedMigration: getenv("EXPECTED_MIGRATION"),
		PprofAddr:         getenv("PPROF_ADDR"),
	}
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is required (postgres://user@host:port/db)"))
	} else if !dsnRe.MatchString(c.DatabaseURL) {
		errs = append(errs, errors.New("DATABASE_URL must start with postgres:// or postgresql://"))
	}
	c.Port = intVar(getenv, "BROKER_PORT", 7900, 1, 65535, &errs)
	c.MaxMessageBytes = intVar(getenv, "MAX_MESSAGE_BYTES", 65536, 256, 64<<20, &errs)
	c.MaxConnectionsPerMesh = intVar(getenv, "MAX_CONNECTIONS_PER_MESH", 100, 1, 1_000_000, &errs)
	c.MaxConnectionsPerMember = intVar(getenv, "MAX_CONNECTIONS_PER_MEMBER", 10, 1, 1_000_000, &errs)
	c.HelloBurst = intVar(getenv, "HELLO_RATE_BURST", 20, 1, 1_000_000, &errs)
	c.HelloPerMinute = intVar(getenv, "HELLO_RATE_PER_MIN", 60, 1, 1_000_000, &errs)
	c.HookFreshWindow = time.Duration(intVar(getenv, "HOOK_FRESH_WINDOW_SECONDS", 30, 1, 86400, &errs)) * time.Second
	c.HookRateLimitPerMin = intVar(getenv, "HOOK_RATE_LIMIT_PER_MIN", 30, 1, 1_000_000, &errs)
	c.HookRateLimitPerIP = intVar(getenv, "HOOK_RATE_LIMIT_PER_IP_PER_MIN", 300, 1, 1_000_000, &errs)
	c.CORSAllowedOrigins = originsVar(getenv, "CORS_ALLOWED_ORIGINS", &errs)
	c.ReadHeaderTimeout = time.Duration(intVar(getenv, "HTTP_READ_HEADER_TIMEOUT_SECONDS", 10, 1, 3600, &errs)) * time.Second
	c.ReadTimeout = time.Duration(intVar(getenv, "HTTP_READ_TIMEOUT_SECONDS", 30, 1, 3600, &errs)) * time.Second
	c.IdleTimeout = time.Duration(intVar(getenv, "HTTP_IDLE_TIMEOUT_SECONDS", 120, 1, 86400, &errs)) * time.Second
	c.MaxPreauthPerIP = intVar(getenv, "MAX_PREAUTH_PER_IP", 256, 1, 1_000_000, &errs)
	c.HelloConcurrency = intVar(getenv, "HELLO_CONCURRENCY", 32, 1, 100_000, &errs)
	c.Env = orDefault(getenv("MESHD_ENV"), "development")
	c.Keyring = keyringVar(getenv, &errs)
	c.StatusTTL = time.Duration(intVar(getenv, "STATUS_TTL_SECONDS", 60, 1, 86400*30, &errs)) * time.Second
	c.SendBurst = intVar(getenv, "SEND_RATE_BURST", 10, 1, 1_000_000_000, &errs)
	c.PushWindow = intVar(getenv, "PUSH_WINDOW", 256, 1, 100_000, &errs)
	c.SlowConsumerAfter = time.Duration(intVar(getenv, "SLOW_CONSUMER_SECONDS", 60, 1, 86400, &errs)) * time.Second
	c.SendPerMinute = intVar(getenv, "SEND_RATE_PER_MIN", 60, 1, 1_000_000_000, &errs)
	c.MetricsAddr = getenv("METRICS_ADDR")
	if c.MetricsAddr != "" {
		if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("METRICS_ADDR must be host:port or :port (got %q)", c.MetricsAddr))
		}
	}
	c.CanaryStallAfter = time.Duration(intVar(getenv, "CANARY_STALL_SECONDS", 15, 3, 3600, &errs)) * time.Second
	c.PublicHTTPURL = publicHTTPURL(getenv("BROKER_PUBLIC_URL"), c.PublicURL, &errs)
	if c.NodeID == "" {
		host, _ := os.Hostname()
		c.NodeID = fmt.Sprintf("%s-%d", orDefault(host, "meshd"), os.Getpid())
	}
	return c, errors.Join(errs...)
}

// publicHTTPURL is the base of webhook URLs: BROKER_PUBLIC_URL
// (http(s)://host[:port][/path]), else BROKER_URL with ws(s) turned into
// http(s) and a trailing /ws dropped, else "" (URLs are then the path only).
func publicHTTPURL(raw, brokerURL string, errs *[]error) string {
	raw = strings.TrimRight(strings.TrimSpace(raw), "/")
	if raw != "" {
		if !strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") {
			*errs = append(*errs, fmt.Errorf("BROKER_PUBLIC_URL must start with http:// or https:// (got %q)", raw))
			return ""
		}
		return raw
	}
	u := strings.TrimSuffix(strings.TrimRight(brokerURL, "/"), "/ws")
	switch {
	case strings.HasPrefix(u, "wss://"):
		return "https://" + strings.TrimPrefix(u, "wss://")
	case strings.HasPrefix(u, "ws://"):
		return "http://" + strings.TrimPrefix(u, "ws://")
	}
	return ""
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func intVar(getenv func(string) string, name string, def, lo, hi int, errs *[]error) int {
	raw := getenv(name)
	if raw == "" {
		return def
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < lo || n > hi {
		*errs = append(*errs, fmt.Errorf("%s must be an integer in [%d, %d] (got %q)", name, lo, hi, raw))
		return def
	}
	return n
}

// originsVar reads a comma-separated list of exact origins
// (scheme://host[:port]) or "*"; unset is none.
func originsVar(getenv func(string) string, name string, errs *[]error) []string {
	var out []string
	for _, o := range strings.Split(getenv(name), ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		switch {
		case o == "":
		case o == "*" || strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://"):
			out = append(out, o)
		default:
			*errs = append(*errs, fmt.Errorf("%s: %q is not an origin (https://host[:port] or *)", name, o))
		}
	}
	return out
}

// keyringVar reads BROKER_ENCRYPTION_KEY (the sealing key) and
// BROKER_ENCRYPTION_KEYS_PREVIOUS (comma-separated keys still accepted for
// reading during a rotation); nil when the key is unset.
func keyringVar(getenv func(string) string, errs *[]error) *seal.Keyring {
	raw := getenv("BROKER_ENCRYPTION_KEY")
	if raw == "" {
		return nil
	}
	cur, err := seal.ParseKey(raw)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("BROKER_ENCRYPTION_KEY %w", err))
		return nil
	}
	var prev [][]byte
	for _, p := range strings.Split(getenv("BROKER_ENCRYPTION_KEYS_PREVIOUS"), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		k, err := seal.ParseKey(p)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("BROKER_ENCRYPTION_KEYS_PREVIOUS: each key %w", err))
			return nil
		}
		prev = append(prev, k)
	}
	return seal.New(cur, prev...)
}
