package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd/api"
	"github.com/meshd/meshd/audit"
	"github.com/meshd/meshd/broker"
	"github.com/meshd/meshd/collab"
	"github.com/meshd/meshd/fanout"
	"github.com/meshd/meshd/ha"
	"github.com/meshd/meshd/internal/httpx"
	"github.com/meshd/meshd/jobs"
	"github.com/meshd/meshd/store"
	"github.com/meshd/meshd/verbs"
)

// Compile-time checks that the concrete types satisfy the broker's
// and the control plane's interfaces (STYLE #3).
var (
	_ broker.Store   = (*store.Store)(nil)
	_ broker.Fanout  = (*fanout.Bus)(nil)
	_ broker.Pinger  = (*fanout.Bus)(nil)
	_ collab.Store   = (*store.Store)(nil)
	_ api.Store      = (*store.Store)(nil)
	_ api.Publisher  = (*fanout.Bus)(nil)
	_ audit.Store    = (*store.Store)(nil)
	_ broker.Auditor = (*audit.Writer)(nil)
	_ jobs.Store     = (*store.Store)(nil)
	_ jobs.Publisher = (*fanout.Bus)(nil)
	_ jobs.Auditor   = (*audit.Writer)(nil)
	_ jobs.Router    = (*broker.Server)(nil)
	_ verbs.Store    = (*store.Store)(nil)
	_ verbs.Auditor  = (*audit.Writer)(nil)
)

// shutdownBudget bounds the whole drain after SIGTERM.
const shutdownBudget = 10 * time.Second

func newLogger(level string, w io.Writer) zerolog.Logger {
	zerolog.TimestampFieldName = "ts"
	zerolog.MessageFieldName = "msg"
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

func openStore(ctx context.Context, cfg config, log zerolog.Logger, migrate bool) (*store.Store, error) {
	st, err := store.New(ctx, store.Config{URL: cfg.DatabaseURL, Logger: log, Keyring: cfg.Keyring})
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if migrate {
		if err := st.Migrate(ctx); err != nil {
			st.Close()
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	return st, nil
}

func migrate(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel, stderr)
	st, err := openStore(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer st.Close()
	name, _, err := st.LatestApplied(ctx)
	if err != nil {
		return err
	}
	log.Info().Str("latest", name).Msg("migrations applied")
	return nil
}

// serve runs one replica until ctx is cancelled (SIGTERM/SIGINT), then
// drains: readiness fails, sockets close with 1001, presences enter their
// grace lease, and the process exits 0 within shutdownBudget.
func serve(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel, stderr).With().Str("node", cfg.NodeID).Logger()
	sha := orDefault(cfg.GitSHA, gitSHA)

	if cfg.Keyring == nil && cfg.Env == "production" {
		return errors.New("MESHD_ENV=production requires BROKER_ENCRYPTION_KEY (64 hex chars): owner keys, root keys and invite tokens are encrypted at rest with it")
	}
	st, err := openStore(ctx, cfg, log, !cfg.SkipMigrate)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := sealAtStart(ctx, cfg, st, log); err != nil {
		return err
	}

	busCfg := fanout.Config{URL: cfg.NATSURL, Prefix: cfg.SubjectPrefix, Name: "meshd-" + cfg.NodeID, Logger: log}
	if cfg.NATSURL == "" {
		// In process, without a listener: a single node's bus needs no
		// port (and takes none that BROKER_PORT could then not bind).
		ns, err := fanout.StartEmbedded(fanout.EmbeddedConfig{InProcessOnly: true, Logger: log.With().Str("component", "nats").Logger().Level(zerolog.WarnLevel)})
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		defer ns.Shutdown()
		busCfg.InProcess = ns.InProcess()
		log.Info().Msg("NATS_URL unset: started embedded NATS in process (single node only)")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newBuildInfo(version, sha))
	busCfg.Registerer = reg
	bus, err := fanout.New(ctx, busCfg)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer bus.Close()

	aw, err := audit.New(audit.Config{Store: st, Registry: reg, Logger: log})
	if err != nil {
		return err
	}
	srv, err := broker.New(broker.Config{
		NodeID: cfg.NodeID, Store: st, CollabStore: st, PublicURL: cfg.PublicHTTPURL, Fanout: bus, NATS: bus, Audit: aw, Registry: reg, Logger: log,
		MaxMessageBytes: cfg.MaxMessageBytes, MaxConnectionsPerMesh: cfg.MaxConnectionsPerMesh, MaxPreauthPerIP: cfg.MaxPreauthPerIP,
		HelloConcurrency:        cfg.HelloConcurrency,
		MaxConnectionsPerMember: cfg.MaxConnectionsPerMember,
		HelloBurst:              float64(cfg.HelloBurst), HelloPerMinute: float64(cfg.HelloPerMinute),
		HookFreshWindow: cfg.HookFreshWindow, Version: version, GitSHA: sha,
		SendBurst: float64(cfg.SendBurst), SendPerMinute: float64(cfg.SendPerMinute),
		PushWindow: cfg.PushWindow, SlowConsumerAfter: cfg.SlowConsumerAfter, CanaryStallAfter: cfg.CanaryStallAfter,
		MetricsElsewhere:  cfg.MetricsAddr != "",
		ExpectedMigration: cfg.ExpectedMigration, JSONLDir: cfg.JSONLDir,
	})
	if err != nil {
		return err
	}
	leaderJobs, err := jobs.New(jobs.Config{
		Store: st, Fanout: bus, Audit: aw, Router: srv, Registry: reg, Logger: log,
		StatusTTL: cfg.StatusTTL, HookFreshWindow: cfg.HookFreshWindow,
	})
	if err != nil {
		return err
	}
	ctl, err := api.New(api.Config{
		Store: st, Fanout: bus, Registry: reg, Logger: log,
		MaxMessageBytes: cfg.MaxMessageBytes, HookFreshWindow: cfg.HookFreshWindow,
		HookRateLimitPerMin: cfg.HookRateLimitPerMin, HookRateLimitPerIPPerMin: cfg.HookRateLimitPerIP, LegacyAuth: cfg.LegacyAuth,
		PublicURL: cfg.PublicURL, AppURL: cfg.AppURL,
	})
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	var mln net.Listener // METRICS_ADDR: /metrics off the public port
	if cfg.MetricsAddr != "" {
		if mln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listen METRICS_ADDR %s: %w", cfg.MetricsAddr, err)
		}
	}
	auditCtx, stopAudit := context.WithCancel(context.Background())
	auditDone := make(chan error, 1)
	go func() { auditDone <- aw.Run(auditCtx) }()
	// Runs last (defers are last in, first out): the writer outlives the
	// broker's Shutdown and the leader loops, then writes what is left.
	defer func() {
		stopAudit()
		if err := <-auditDone; err != nil {
			log.Error().Err(err).Msg("audit writer")
		}
	}()
	srvCtx, stopSrv := context.WithCancelCause(context.Background())
	var leaders sync.WaitGroup
	defer func() {
		// The leader loops release their locks and close their connections
		// before serve returns (they own a database connection each).
		stopSrv(errors.New("meshd: serve returned"))
		leaders.Wait()
	}()
	srv.Start(srvCtx)
	// Who uses the legacy auth shim: flushed every 10 s and once at the end.
	leaders.Go(func() { ctl.Run(srvCtx) })
	if err := runSingletons(srvCtx, &leaders, cfg, log, reg, leaderJobs.All()); err != nil {
		return err
	}
	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	hs := newHTTPServer(cfg, handler(log, srv, ctl, cfg.CORSAllowedOrigins))
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(ln) }()
	if mln != nil {
		// Scraped until the process exits, drain included.
		ms := newHTTPServer(cfg, srv.MetricsRoutes())
		go func() { errc <- ms.Serve(mln) }()
		defer ms.Close()
		log.Info().Str("addr", mln.Addr().String()).Msg("metrics listening")
	}
	log.Info().Str("addr", ln.Addr().String()).Str("version", version).Str("gitSha", sha).
		Int("max_connections_per_mesh", cfg.MaxConnectionsPerMesh).Int("max_message_bytes", cfg.MaxMessageBytes).
		Msg("broker listening")
	fmt.Fprintf(stderr, "meshd %s listening on %s — clients connect to ws://%s/ws (health: http://%s/health)\n",
		version, ln.Addr(), connectHost(cfg.Host, ln), connectHost(cfg.Host, ln))

	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info().Str("signal", context.Cause(ctx).Error()).Msg("shutdown signal")
	return drain(srv, hs, log)
}

// sealAtStart seals the plaintext secrets of rows written before
// BROKER_ENCRYPTION_KEY was set (issue 12 item 7), or, without a key, warns
// and refuses a database whose secrets are already sealed.
func sealAtStart(ctx context.Context, cfg config, st *store.Store, log zerolog.Logger) error {
	if cfg.Keyring == nil {
		sealed, err := st.SealedSecretsExist(ctx)
		if err != nil {
			return err
		}
		if sealed {
			return errors.New("the database holds secrets encrypted with BROKER_ENCRYPTION_KEY, which is unset")
		}
		log.Warn().Msg("BROKER_ENCRYPTION_KEY unset: owner keys, root keys and invite tokens are stored in plaintext (development only; MESHD_ENV=production refuses this)")
		return nil
	}
	n, unreadable, err := st.ResealSecrets(ctx)
	if err != nil {
		return err
	}
	if unreadable > 0 {
		return fmt.Errorf("%d secrets are sealed with a key that is neither BROKER_ENCRYPTION_KEY nor in BROKER_ENCRYPTION_KEYS_PREVIOUS", unreadable)
	}
	log.Info().Int("sealed", n).Str("key_id", cfg.Keyring.CurrentID()).Msg("secrets at rest encrypted")
	return nil
}

// keys runs `meshd keys rotate`: every secret not sealed under the current
// BROKER_ENCRYPTION_KEY (plaintext, or a key of
// BROKER_ENCRYPTION_KEYS_PREVIOUS) is re-sealed under it. Run it after
// deploying the new key (with the old one in _PREVIOUS) on every replica;
// then the old key can be dropped.
func keys(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 1 || args[0] != "rotate" {
		return errors.New("usage: meshd keys rotate")
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if cfg.Keyring == nil {
		return errors.New("keys rotate: BROKER_ENCRYPTION_KEY is required (the new key; old ones in BROKER_ENCRYPTION_KEYS_PREVIOUS)")
	}
	st, err := openStore(ctx, cfg, newLogger(cfg.LogLevel, stderr), !cfg.SkipMigrate)
	if err != nil {
		return err
	}
	defer st.Close()
	n, unreadable, err := st.ResealSecrets(ctx)
	if err != nil {
		return fmt.Errorf("keys rotate: %w", err)
	}
	fmt.Fprintf(stdout, "re-encrypted %d secrets under key %s\n", n, cfg.Keyring.CurrentID())
	if unreadable > 0 {
		return fmt.Errorf("keys rotate: %d secrets are sealed with a key not given (add it to BROKER_ENCRYPTION_KEYS_PREVIOUS)", unreadable)
	}
	return nil
}

// newHTTPServer bounds what a slow or idle client can hold (issue 12 item
// 6): the request header must arrive within ReadHeaderTimeout, the whole
// request (header and body) within ReadTimeout, and a keep-alive
// connection is closed after IdleTimeout without a request. A WebSocket is
// not cut by ReadTimeout: the socket's read loop sets its own deadline
// (PongWait) as soon as it is upgraded.
func newHTTPServer(cfg config, h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout: cfg.ReadTimeout, IdleTimeout: cfg.IdleTimeout}
}

// handler serves the broker's and the control plane's routes on one mux,
// with request ids, the access log and CORS (listed origins only) around
// both.
func handler(log zerolog.Logger, srv *broker.Server, ctl *api.Server, origins []string) http.Handler {
	mux := http.NewServeMux()
	srv.Register(mux)
	ctl.Register(mux)
	return httpx.Handler(log.With().Str("component", "http").Logger(), mux, origins...)
}

// singletonKey derives a job's advisory lock key from its name, in a range
// apart from the migration lock and the audit keys.
func singletonKey(name string) int64 {
	sum := sha256.Sum256([]byte("meshd-singleton:" + name))
	return int64(binary.BigEndian.Uint64(sum[:8]) & 0x7fffffffffffffff)
}

// runSingletons campaigns for each cluster-wide job (package jobs);
// whichever replica holds a job's lock runs it, and another takes over when
// it is lost. wg waits for every leader loop.
func runSingletons(ctx context.Context, wg *sync.WaitGroup, cfg config, log zerolog.Logger, reg prometheus.Registerer, all map[string]func(context.Context) error) error {
	for name, job := range all {
		l, err := ha.NewLeader(ha.Config{DSN: cfg.DatabaseURL, Key: singletonKey(name), Name: name, Logger: log, Registerer: reg})
		if err != nil {
			return fmt.Errorf("leader %s: %w", name, err)
		}
		wg.Go(func() {
			if err := l.Run(ctx, job); err != nil {
				log.Error().Err(err).Str("singleton", name).Msg("leader loop stopped")
			}
		})
	}
	return nil
}

func drain(srv *broker.Server, hs *http.Server, log zerolog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownBudget)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("broker drain")
	}
	if n, err := srv.LeaseLocalPresences(ctx); err != nil {
		log.Warn().Err(err).Msg("lease local presences")
	} else if n > 0 {
		log.Info().Int64("presences", n).Msg("presences put into grace lease")
	}
	if err := hs.Shutdown(ctx); err != nil {
		log.Warn().Err(err).Msg("http shutdown")
	}
	log.Info().Msg("shutdown complete")
	return nil
}

func connectHost(host string, ln net.Listener) string {
	port := ln.Addr().(*net.TCPAddr).Port
	if host == "0.0.0.0" || host == "" || host == "::" {
		host = "localhost"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
