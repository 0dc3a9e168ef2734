// Package broker owns the sockets: the WebSocket endpoint (melody), the
// per-connection handshake and frame dispatch, the local connection registry
// (Hub), the HTTP routes on the same port, rate limiters and close reasons.
// It knows nothing about SQL or NATS subjects: it talks to the interfaces in
// deps.go, which cmd/meshd satisfies with store.Store and fanout.Bus.
//
// Everything that matters across replicas lives in Postgres (presence,
// queue, grants, caps) or travels over the Fanout (wake-ups, broadcasts,
// system events, closes); the Hub only holds this replica's sockets.
//
// Lock order: Hub.mu before conn.mu. Neither is held across I/O.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/olahol/melody"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/canary"
	"github.com/meshd/meshd/collab"
	"github.com/meshd/meshd/internal/ratelimit"
	"github.com/meshd/meshd/verbs"
	"github.com/meshd/meshd/wire"
)

// Store is everything the broker asks of the database, the store of the
// verbs it hands over to package verbs included.
type Store interface {
	Members
	Presences
	Queue
	Maintenance
	PresenceEdits
	Migrations
	StreamStore
	Pinger
	canary.Store
	verbs.Store
}

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	NodeID   string               // required: this replica's id (presence.node_id)
	Store    Store                // required
	Fanout   Fanout               // required
	Audit    Auditor              // required: the audit-chain writer (audit.Writer)
	NATS     Pinger               // optional: reported by /health and /health/ready
	Registry *prometheus.Registry // required: metrics are registered here and served on /metrics
	// MetricsElsewhere leaves /metrics off Register's mux: cmd/meshd serves
	// it on its own listener (METRICS_ADDR) so it need not be public.
	MetricsElsewhere bool
	Logger           zerolog.Logger // carries the "node" key (cmd/meshd adds it once for the process)
	// CollabStore holds the rows of the 66 collaboration verbs (package
	// collab; cmd/meshd passes store.Store). The broker builds the handler
	// itself so collab can publish through it. Nil leaves those types
	// answered with unknown_message_type.
	CollabStore collab.Store
	// PublicURL is the broker's public HTTP base URL (BROKER_PUBLIC_URL),
	// the prefix of the webhook URLs collab hands out; "" gives URLs that
	// are only the path.
	PublicURL string

	MaxMessageBytes       int // WS frame and send size cap; default 65536
	MaxConnectionsPerMesh int // across all replicas; default 100
	// MaxConnectionsPerMember caps one member's live + grace presences
	// across all replicas (A.3-22); default 10.
	MaxConnectionsPerMember int
	HelloBurst              float64       // per-member verified-hello bucket capacity; default 20
	HelloPerMinute          float64       // per-member hello refill; default 60
	HelloTimeout            time.Duration // default 10s (A.3-9)
	// HelloConcurrency bounds the hellos and session_hellos this replica
	// verifies and attaches at once (HELLO_CONCURRENCY); the rest wait for
	// a turn in arrival order, so a reconnect storm cannot take every
	// database connection from the sockets already attached. Default 32:
	// twice the store's default pool (store.DefaultMaxConns).
	HelloConcurrency int
	// MaxPreauthPerIP caps this replica's sockets from one client IP that
	// have not completed hello (MAX_PREAUTH_PER_IP); default 256.
	MaxPreauthPerIP int
	PingPeriod      time.Duration // default 30s (B.1)
	PongWait        time.Duration // terminate after this long without pong; default 75s
	Grace           time.Duration // presence lease after a close; default 90s
	ClaimLease      time.Duration // at-least-once claim lease; default 30s
	RedrainInterval time.Duration // periodic re-drain of connected recipients; default 2s
	SweepInterval   time.Duration // lease eviction / stale presence sweeps; default 5s
	HookFreshWindow time.Duration // HOOK_FRESH_WINDOW_SECONDS; default 30s
	SendBurst       float64       // per-member send bucket capacity; default 10
	SendPerMinute   float64       // per-member refill; default 60
	WriteBuffer     int           // frames queued per socket before it is a slow consumer; default 512
	// PushWindow is the credit of a client that sends client_ack: at most
	// this many pushes in flight without an ack; the next rows are claimed
	// as acks arrive, so a reconnecting client gets its backlog at its own
	// pace. Default 256 (docs/benchmarks.md).
	PushWindow int
	// SlowConsumerAfter closes (slow_consumer) an acking client whose
	// window stayed full this long; its claims are released at once.
	// Default 60s.
	SlowConsumerAfter time.Duration
	// AuditWait bounds how long a socket's read loop waits for its own
	// audit event (peer_joined, …) to commit, so the event lands before the
	// socket's next send; the writer keeps the event either way. Default 2s.
	AuditWait time.Duration
	// CanaryStallAfter fails /health/ready with delivery_stalled when no
	// delivery canary round (package canary) completed this long; default 15s
	// (CANARY_STALL_SECONDS). CanaryInterval is how often a round starts;
	// default 5s, at most a third of CanaryStallAfter.
	CanaryStallAfter time.Duration
	CanaryInterval   time.Duration

	// ExpectedMigration, when set, makes /health/ready fail with
	// migration_missing until the newest applied migration has this file
	// name or SHA-256 (EXPECTED_MIGRATION, A.3-1).
	ExpectedMigration string
	// JSONLDir enables JSONL status inference from Claude Code transcripts
	// under this projects directory (B.6.3); empty means a remote broker.
	JSONLDir string

	Version string
	GitSHA  string
	Now     func() time.Time // default time.Now
}

func (c *Config) validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("broker: NodeID required")
	case c.Store == nil:
		return errors.New("broker: Store required")
	case c.Fanout == nil:
		return errors.New("broker: Fanout required")
	case c.Audit == nil:
		return errors.New("broker: Audit required")
	case c.Registry == nil:
		return errors.New("broker: Registry required")
	}
	def(&c.MaxMessageBytes, 65536)
	def(&c.MaxPreauthPerIP, 256)
	def(&c.MaxConnectionsPerMesh, 100)
	def(&c.MaxConnectionsPerMember, 10)
	def(&c.HelloBurst, 20)
	def(&c.HelloPerMinute, 60)
	def(&c.HelloTimeout, 10*time.Second)
	def(&c.HelloConcurrency, 32)
	def(&c.PingPeriod, 30*time.Second)
	def(&c.PongWait, 75*time.Second)
	def(&c.Grace, 90*time.Second)
	def(&c.ClaimLease, 30*time.Second)
	def(&c.RedrainInterval, 2*time.Second)
	def(&c.SweepInterval, 5*time.Second)
	def(&c.HookFreshWindow, 30*time.Second)
	def(&c.SendBurst, 10)
	def(&c.SendPerMinute, 60)
	def(&c.WriteBuffer, 512)
	def(&c.PushWindow, 256)
	def(&c.SlowConsumerAfter, 60*time.Second)
	def(&c.AuditWait, 2*time.Second)
	def(&c.CanaryStallAfter, 15*time.Second)
	def(&c.CanaryInterval, min(5*time.Second, c.CanaryStallAfter/3))
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.GitSHA == "" {
		c.GitSHA = "unknown"
	}
	return nil
}

// def sets *p to v when *p is unset (zero or negative).
func def[T int | float64 | time.Duration](p *T, v T) {
	if *p <= 0 {
		*p = v
	}
}

// Server is one replica's broker: WebSocket endpoint, HTTP routes, Hub.
type Server struct {
	cfg     Config // immutable after New
	log     zerolog.Logger
	m       *melody.Melody
	hub     *Hub
	met     *metrics
	sendRL  *ratelimit.TokenBucket
	helloRL *ratelimit.TokenBucket
	// helloSlots holds one token per hello being handled (admission
	// pacing, Config.HelloConcurrency).
	helloSlots chan struct{}
	verbRL     *ratelimit.TokenBucket // presence, visibility, profile and group verbs
	started    time.Time

	draining atomic.Bool
	dbUp     atomic.Bool

	// ctx is the server's lifetime: every connection context derives from
	// it, the background loops run under it, and Shutdown (or the context
	// given to Start) cancels it with the cause.
	ctx    context.Context
	cancel context.CancelCauseFunc
	loops  sync.WaitGroup // background loops started by Start

	// The group commit of the delivery road (delivery.go), run by Start.
	enqueues  *batcher[*enqueueItem]
	ids       idClock
	acks      *batcher[meshd.AckByID]
	delivered *batcher[[]string]
	claims    *batcher[*claimItem]
	mux       http.Handler
	frames    map[string]frameHandler // immutable after New
	collab    *collab.Handler         // immutable after New; nil without Config.CollabStore
	verbs     *verbs.Handler          // immutable after New (verbs_socket.go)
	canary    *canary.Canary          // the delivery canary, run by Start
	stats     sync.Map                // *conn → its last set_stats counters (stats.go)
	stopOnce  sync.Once
}

// New validates cfg and returns a Server; call Start to run its background
// loops and serve Handler() on the broker port.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With().Str("component", "broker").Logger(), // the caller's logger names the node
		sendRL:     ratelimit.New(cfg.SendBurst, cfg.SendPerMinute),
		helloRL:    ratelimit.New(cfg.HelloBurst, cfg.HelloPerMinute),
		helloSlots: make(chan struct{}, cfg.HelloConcurrency),
		verbRL:     ratelimit.New(verbBurstFactor*cfg.SendBurst, cfg.SendPerMinute),
		started:    cfg.Now(),
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.met = newMetrics(cfg.Registry, wire.MetricLabels(false), wire.MetricLabels(true))
	s.hub = newHub(s)
	s.newBatchers()
	s.m = s.newMelody()
	var err error
	if s.verbs, err = s.newVerbs(); err != nil {
		return nil, err
	}
	if s.canary, err = canary.New(canary.Config{NodeID: cfg.NodeID, Store: cfg.Store, Fanout: cfg.Fanout,
		Road: enqueuer{s}, Registry: cfg.Registry, Logger: s.log, StallAfter: cfg.CanaryStallAfter,
		Interval: cfg.CanaryInterval, ClaimLease: cfg.ClaimLease, ClaimLimit: claimBatch}); err != nil {
		return nil, err
	}
	s.frames = s.handlers()
	if s.collab, err = s.newCollab(); err != nil {
		return nil, err
	}
	s.mux = s.routes()
	return s, nil
}

// Start runs the background loops (DB ping, re-drain, sweeps) until Shutdown.
func (s *Server) Start(parent context.Context) {
	context.AfterFunc(parent, func() { s.cancel(fmt.Errorf("broker: stopped: %w", context.Cause(parent))) })
	ctx := s.ctx
	s.dbUp.Store(s.cfg.Store.Ping(ctx) == nil)
	s.setDBGauge()
	for _, loop := range []func(context.Context){s.pingLoop, s.redrainLoop, s.sweepLoop, s.hub.workers,
		s.enqueues.loop, s.acks.loop, s.delivered.loop, func(ctx context.Context) { _ = s.canary.Run(ctx) }} {
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			loop(ctx)
		}()
	}
	// Claim batches run claimWorkers at a time (delivery.go): one batch
	// per replica at a time would put every drain behind a single
	// database backend.
	for range claimWorkers {
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.claims.loop(ctx)
		}()
	}
}

// Handler serves /ws and the HTTP routes.
func (s *Server) Handler() http.Handler { return s.mux }

// Hub exposes the connection registry (tests call ConsistencyCheck).
func (s *Server) Hub() *Hub { return s.hub }

// Shutdown drains this replica (SIGTERM): readiness fails, new sockets are
// refused, local sockets are closed with 1001 "shutting down" and their
// presences enter the grace lease so clients reattach elsewhere (A.3-17);
// then the background loops stop. It returns when done or ctx expires.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		s.draining.Store(true)
		s.met.draining.Set(1)
		s.hub.closeAll(ctx, wire.ReasonShuttingDown)
		if err = s.m.Close(); errors.Is(err, melody.ErrClosed) {
			err = nil
		}
		s.cancel(errShutdown)
		done := make(chan struct{})
		go func() { s.loops.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("broker: shutdown: %w", ctx.Err())
		}
	})
	return err
}

var errShutdown = errors.New("broker: shutdown")

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// pingLoop keeps dbUp: down after pingFailures consecutive failed pings
// (one slow answer under a load the replica is serving is not an outage),
// up after one success. Store.Ping has a connection of its own, so the
// ping never queues behind the busy pool.
func (s *Server) pingLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := s.cfg.Store.Ping(pctx)
		cancel()
		if err != nil {
			failed++
		} else {
			failed = 0
		}
		up := failed < pingFailures
		was := s.dbUp.Swap(up)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn().Err(err).Int("consecutive", failed).Bool("ready", up).Msg("db ping failed")
		case err == nil && !was:
			s.log.Info().Msg("db healthy")
		}
		s.setDBGauge()
	}
}

// pingFailures is how many consecutive failed pings mark the DB down.
const pingFailures = 2

func (s *Server) setDBGauge() {
	if s.dbUp.Load() {
		s.met.dbHealthy.Set(1)
	} else {
		s.met.dbHealthy.Set(0)
	}
}
