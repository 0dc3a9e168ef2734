// Package ha owns leadership: a PostgreSQL session advisory lock held on a
// dedicated connection (never one from the store's pool), exposed to
// leader-only jobs as a context that is cancelled the moment the lock or its
// connection is lost. It imports neither broker, store nor fanout.
//
// A Leader runs one supervised loop per job:
//
//	connect → pg_try_advisory_lock every Interval → on success hold the lock
//	one Interval (settle) → run the job under a leader context → hold:
//	block reading the connection, and every Interval run SELECT 1 → on
//	failure cancel the leader context (cause ErrLeadershipLost), wait for
//	the job to return, drop the connection, start over (after 3 Intervals,
//	so a healthy follower goes first).
//
// Advisory locks have no TTL; the lock lives exactly as long as the backend
// session. A terminated backend is noticed at once (the hold loop is always
// reading, so the server's FATAL message or the socket close arrives
// immediately); a silent one within Interval plus the check timeout. The
// server frees the lock of a vanished leader after about 4×Keepalive (see
// lockConnConfig), which is longer, so a partitioned leader has stopped
// before a successor starts; after an abrupt loss the successor's settle
// Interval gives the old job time to return. What the lock cannot enforce is
// the job itself: a job must return promptly (well within one Interval) when
// its context is cancelled.
//
// The DSN must reach PostgreSQL directly or through a session-mode pooler;
// a transaction-mode pooler would move the session lock between clients.
package ha

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Defaults for zero Config fields.
const (
	DefaultInterval  = 2 * time.Second
	DefaultKeepalive = 5 * time.Second
)

// lostBackoff is how many Intervals a replica that just lost the lock waits
// before campaigning again.
const lostBackoff = 3

// minCheckTimeout keeps a short Interval (tests) from turning a slow but
// healthy round trip into a lost leadership.
const minCheckTimeout = time.Second

var validName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Config configures a Leader. Zero values take the documented defaults.
type Config struct {
	// DSN is the PostgreSQL URL or keyword/value string (required).
	DSN string
	// Key is the advisory lock key; one per job, the same on every replica.
	Key int64
	// Name is the job's name ([a-z][a-z0-9_]*), used in logs and as the
	// value of the job label, so it must come from the caller's closed set
	// of job names (required).
	Name string
	// Interval is how often a follower tries the lock and a leader checks
	// its connection. Default 2s; must not exceed Keepalive.
	Interval time.Duration
	// Keepalive is the TCP keepalive idle time and probe interval on the
	// lock connection (3 probes, tcp_user_timeout 3×Keepalive): the server
	// frees a vanished leader's lock after about 4×Keepalive. Default 5s;
	// at least 1s (the server takes whole seconds).
	Keepalive time.Duration
	// Logger receives acquire/lose/release events. The zero Logger discards.
	Logger zerolog.Logger
	// Registerer receives broker_leader{singleton} (required). Several Leaders
	// may share one; each Name must be used by one Leader per registry.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.DSN == "":
		return c, errors.New("ha: config: DSN is required")
	case c.Registerer == nil:
		return c, errors.New("ha: config: Registerer is required")
	case !validName.MatchString(c.Name):
		return c, fmt.Errorf("ha: config: Name %q must match %s", c.Name, validName)
	case c.Interval < 0 || c.Keepalive < 0:
		return c, errors.New("ha: config: Interval and Keepalive must not be negative")
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Keepalive == 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.Keepalive < time.Second {
		return c, errors.New("ha: config: Keepalive must be at least 1s")
	}
	if c.Interval > c.Keepalive {
		// Otherwise the server could free the lock of a partitioned leader
		// before that leader's own check notices.
		return c, errors.New("ha: config: Interval must not exceed Keepalive")
	}
	return c, nil
}

// Leader campaigns for one advisory lock and runs a job while it holds it.
type Leader struct {
	// immutable after NewLeader
	connConfig   *pgx.ConnConfig
	key          int64
	interval     time.Duration
	checkTimeout time.Duration
	log          zerolog.Logger
	gauge        prometheus.Gauge // broker_leader{singleton=Name}

	leading atomic.Bool // true while the job runs under the lock
	running atomic.Bool // Run is active
}

// NewLeader validates cfg and registers the metric; it does not connect.
func NewLeader(cfg Config) (*Leader, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	connConfig, err := lockConnConfig(cfg.DSN, cfg.Name, cfg.Keepalive)
	if err != nil {
		return nil, err
	}
	vec, err := registerGauge(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	l := &Leader{
		connConfig:   connConfig,
		key:          cfg.Key,
		interval:     cfg.Interval,
		checkTimeout: max(cfg.Interval, minCheckTimeout),
		log:          cfg.Logger.With().Str("component", "ha").Str("job", cfg.Name).Int64("lock_key", cfg.Key).Logger(),
		gauge:        vec.WithLabelValues(cfg.Name),
	}
	l.gauge.Set(0)
	return l, nil
}

// registerGauge registers broker_leader, or reuses the one another Leader
// already registered on reg.
func registerGauge(reg prometheus.Registerer) (*prometheus.GaugeVec, error) {
	vec := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "broker_leader",
		Help: "1 while this replica holds the job's advisory lock and runs the job, else 0.",
	}, []string{"singleton"})
	err := reg.Register(vec)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
			return existing, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ha: register metrics: %w", err)
	}
	return vec, nil
}

// IsLeader reports whether the job is running under the lock right now.
func (l *Leader) IsLeader() bool { return l.leading.Load() }

// Run campaigns until ctx is done. Each time the lock is acquired, job runs
// with a context that is cancelled when leadership is lost (cause wraps
// ErrLeadershipLost) or ctx is done; Run waits for job to return before it
// releases the lock or campaigns again. A job that returns on its own ends
// the term (its error, if any, is logged): the lock is released and
// campaigning resumes. On ctx done Run
// releases the lock, closes its connection and returns nil. It returns
// ErrRunning if the Leader is already running.
func (l *Leader) Run(ctx context.Context, job func(leaderCtx context.Context) error) error {
	if job == nil {
		return errors.New("ha: nil job")
	}
	if !l.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer l.running.Store(false)
	for {
		err := l.session(ctx, job)
		if ctx.Err() != nil {
			return nil
		}
		pause := l.interval
		switch {
		case errors.Is(err, ErrLeadershipLost):
			// This replica's lock connection just failed: it is the least
			// healthy candidate, so it lets the followers, which try every
			// Interval, take over first.
			pause = lostBackoff * l.interval
		case !errors.Is(err, errJobReturned):
			l.log.Warn().Err(err).Msg("lock connection failed; retrying")
		}
		if !sleep(ctx, pause) {
			return nil
		}
	}
}

// session is one lock connection: campaign on it, lead at most once, close.
func (l *Leader) session(ctx context.Context, job func(context.Context) error) error {
	conn, err := l.connect(ctx)
	if err != nil {
		return err
	}
	defer closeConn(ctx, conn)
	for {
		ok, err := l.tryLock(ctx, conn)
		if err != nil {
			return err
		}
		if ok {
			return l.lead(ctx, conn, job)
		}
		if !sleep(ctx, l.interval) {
			return ctx.Err()
		}
	}
}

// lead runs one term: job runs under leaderCtx while hold watches the
// connection. The lock is released only after job has returned.
func (l *Leader) lead(ctx context.Context, conn *pgx.Conn, job func(context.Context) error) error {
	if err := l.settle(ctx, conn); err != nil {
		return err
	}
	leaderCtx, cancelLeader := context.WithCancelCause(ctx)
	holdCtx, stopHold := context.WithCancel(ctx)
	done := make(chan struct{})
	l.leading.Store(true)
	l.gauge.Set(1)
	l.log.Info().Msg("acquired leadership")
	go func() {
		defer close(done)
		defer stopHold()
		if err := job(leaderCtx); err != nil && leaderCtx.Err() == nil {
			l.log.Error().Err(err).Msg("job failed; ending the term")
		}
	}()

	lost := l.hold(holdCtx, conn)
	switch {
	case lost != nil:
		cancelLeader(fmt.Errorf("%w: %w", ErrLeadershipLost, lost))
	case ctx.Err() != nil:
		cancelLeader(context.Cause(ctx))
	default:
		cancelLeader(errJobReturned)
	}
	<-done
	l.leading.Store(false)
	l.gauge.Set(0)
	if lost != nil {
		l.log.Warn().Err(lost).Msg("leadership lost")
		return fmt.Errorf("%w: %w", ErrLeadershipLost, lost)
	}
	l.unlock(ctx, conn)
	l.log.Info().Msg("released leadership")
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errJobReturned
}

// settle holds a freshly acquired lock for one Interval before the job
// starts. A predecessor whose backend was terminated (or whose server
// restarted) loses the lock the instant its session ends, while its job is
// still being cancelled; the pause gives that job an Interval to return, so
// two jobs never overlap when jobs stop promptly.
func (l *Leader) settle(ctx context.Context, conn *pgx.Conn) error {
	settleCtx, cancel := context.WithTimeout(ctx, l.interval)
	defer cancel()
	if lost := l.hold(settleCtx, conn); lost != nil {
		return fmt.Errorf("%w: %w", ErrLeadershipLost, lost)
	}
	if ctx.Err() != nil {
		l.unlock(ctx, conn)
		return ctx.Err()
	}
	return nil
}

// hold watches the lock's connection until ctx is done (nil) or the
// connection fails (the error). Between checks it blocks reading the
// connection, so a backend that is terminated or a socket that closes is
// seen immediately, not at the next check.
func (l *Leader) hold(ctx context.Context, conn *pgx.Conn) error {
	for {
		wait, cancel := context.WithTimeout(ctx, l.interval)
		err := conn.PgConn().WaitForNotification(wait)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			continue // a notification: nothing LISTENs here, but harmless
		case !pgconn.Timeout(err):
			return fmt.Errorf("connection: %w", err)
		}
		if err := l.check(ctx, conn); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
