// Package store owns meshd's PostgreSQL pool, its embedded SQL migrations
// and every query: meshes, members, CLI tokens, presence, the message queue
// and the sweeps that keep them tidy. PostgreSQL is the single source of
// truth shared by all replicas, so every operation here is safe to run on
// several replicas at once (see docs/architecture.md).
//
// *Store implements the broker's Members, Presences, Queue and Pinger
// interfaces; cmd/meshd checks that at compile time. It does not import
// broker, fanout or ha (STYLE #1) and speaks the root package's types.
//
// Locks, in the order they are taken:
//  1. the migration session lock pg_try_advisory_lock(7473773831), on its own
//     connection, only in Migrate (B.16);
//  2. in Attach (mesh.attach_presence, one statement): the mesh row FOR
//     SHARE (ArchiveMesh's UPDATE of it waits), the member row FOR NO KEY
//     UPDATE, then a presence slot's two-key advisory lock
//     pg_advisory_xact_lock(hashtext('presence-slot:'||mesh), slot), tried
//     without waiting unless every free slot is taken — the unique live
//     (mesh_id, slot) keeps MAX_CONNECTIONS_PER_MESH exact across replicas;
//  3. row locks (FOR UPDATE [SKIP LOCKED]) on presence, pending_status and
//     message_queue rows, each statement touching one table's rows in id or
//     FIFO order.
//
// The audit lock (B.8, key from "audit:"+mesh) is distinct from both
// advisory keys above.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/meshd/meshd/internal/seal"

	"github.com/meshd/meshd"
)

// DefaultMaxConns is the pool size when Config.MaxConns is zero. Each
// WebSocket frame needs at most one connection for a few milliseconds; 16
// keeps a replica well inside PostgreSQL's default max_connections (100)
// even with several replicas.
const DefaultMaxConns = 16

// Config configures New. The zero value of every field but URL is usable.
type Config struct {
	// URL is the PostgreSQL connection string (postgres://… or key=value).
	// Required.
	URL string
	// MaxConns caps the pool; 0 means DefaultMaxConns. Negative is an error.
	MaxConns int32
	// Logger receives migration progress and warnings; the zero value
	// discards them.
	Logger zerolog.Logger
	// Keyring seals owner signing keys, root keys and invite tokens at rest
	// (BROKER_ENCRYPTION_KEY, internal/seal). nil stores them in plaintext
	// (development only; cmd/meshd refuses that in production).
	Keyring *seal.Keyring
}

// Store is the PostgreSQL-backed implementation of the broker's Members,
// Presences, Queue and Pinger interfaces.
type Store struct {
	pool *pgxpool.Pool  // immutable after New; closed by Close
	log  zerolog.Logger // immutable after New

	// lease is a second, smaller pool whose sessions run with
	// synchronous_commit=off, for the writes whose loss in a PostgreSQL
	// crash costs at most a redelivery: claims and their release, delivered
	// marks, client_acks and the status refresh before a drain. Their
	// commits do not wait for the WAL flush (the durable writes — queue
	// rows, whose commit backs an ack{queued:true}, and everything else —
	// stay on pool). A crash can forget the last such commits: a forgotten
	// claim or delivered mark makes the row claimable again, so the
	// recipient may get the push twice, with the same messageId
	// (docs/architecture.md, at-least-once).
	lease *pgxpool.Pool // immutable after New; closed by Close

	// claims is lease's twin for the two statements every message costs
	// the most to plan — the claim batch (with its status refresh) and the
	// group commit's recipient lookup — whose sessions use generic plans
	// (plan_cache_mode: see New).
	claims *pgxpool.Pool // immutable after New; closed by Close

	// health is one connection of its own for Ping, so readiness measures
	// whether PostgreSQL answers, not how long the busy pool's queue is
	// (issue 11: /health/ready flapped during a 9,500-client reattach the
	// replica was serving).
	health *pgxpool.Pool // immutable after New; closed by Close

	kr *seal.Keyring // immutable after New; nil: secrets in plaintext
}

// New validates cfg and returns a Store with a connection pool. The pool
// connects lazily: New does not fail when the database is down (the replica
// reports it through Ping and /health); call Migrate before serving.
// Every connection runs with timezone=UTC so that timestamptz values render
// the same on every replica (A.3-11).
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.URL == "" {
		return nil, errors.New("store: config: URL is required")
	}
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("store: config: MaxConns %d is negative", cfg.MaxConns)
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("store: config: URL: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns == 0 {
		pc.MaxConns = DefaultMaxConns
	}
	// A connection idle this long is closed so that a replica that served a
	// burst does not keep PostgreSQL slots forever.
	pc.MaxConnIdleTime = 5 * time.Minute
	pc.HealthCheckPeriod = 30 * time.Second
	rp := pc.ConnConfig.RuntimeParams
	rp["timezone"] = "UTC"
	if rp["application_name"] == "" {
		rp["application_name"] = "meshd"
	}
	lc := pc.Copy()
	lc.MaxConns = max(pc.MaxConns/2, 2)
	lc.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	// Every statement of the delivery road reads the queue by key, but on
	// the statistics of a young queue (or any queue before a burst fills
	// it) a scan looks cheaper and stays chosen while the queue grows: the
	// planner is told not to (TestAckPlansReadByKey).
	lc.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
	// The claim batch and the recipient lookup run thousands of times a
	// second with arrays of varying length: PostgreSQL's default planned
	// each execution afresh (custom plans), which cost more CPU than
	// running them (issue 10: 0.64 ms of planning per claim). A generic
	// plan is made once per connection, often while the queue is still
	// empty, so a sequential scan would look cheapest and stay cached
	// while the queue grows (seen: the claim's UPDATE scanning the whole
	// queue): both read by key, and the planner is told to (enable_seqscan,
	// inherited from lease). Only they get
	// generic plans: the ack batch's, made on an empty queue, read every
	// pending row (TestDeliveryPlansAreGeneric pins the ones chosen).
	cc := lc.Copy()
	cc.MaxConns = max(pc.MaxConns/4, 6) // claim workers and the group commit, per replica
	cc.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("store: pool: %w", err)
	}
	lease, err := pgxpool.NewWithConfig(ctx, lc)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: lease pool: %w", err)
	}
	claims, err := pgxpool.NewWithConfig(ctx, cc)
	if err != nil {
		pool.Close()
		lease.Close()
		return nil, fmt.Errorf("store: claims pool: %w", err)
	}
	hc := pc.Copy()
	hc.MaxConns, hc.MinConns = 1, 0
	health, err := pgxpool.NewWithConfig(ctx, hc)
	if err != nil {
		pool.Close()
		lease.Close()
		claims.Close()
		return nil, fmt.Errorf("store: health pool: %w", err)
	}
	return &Store{pool: pool, lease: lease, claims: claims, health: health, log: cfg.Logger.With().Str("component", "store").Logger(), kr: cfg.Keyring}, nil
}

// Close closes the pools, waiting for acquired connections to be released.
func (s *Store) Close() {
	s.pool.Close()
	s.lease.Close()
	s.claims.Close()
	s.health.Close()
}

// Ping reports whether the database answers a trivial query.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.health.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// notFound maps pgx.ErrNoRows to meshd.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return meshd.ErrNotFound
	}
	return err
}

// isUniqueViolation reports whether err is a unique_violation (23505).
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// secs renders d as the seconds argument of make_interval.
func secs(d time.Duration) float64 { return d.Seconds() }

// nullIfEmpty returns nil for "" so that optional text columns store NULL.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
