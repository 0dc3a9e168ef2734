package ha

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

const (
	// keepaliveCount is the number of unanswered keepalive probes after
	// which a peer is declared dead (combined with tcp_user_timeout below).
	keepaliveCount = 3
	// connectTimeout bounds one attempt to open the lock connection.
	connectTimeout = 10 * time.Second
	// releaseTimeout bounds the unlock and close on the way out, which run
	// after ctx is done.
	releaseTimeout = 5 * time.Second
)

// lockConnConfig parses dsn and sets up the dedicated lock connection so
// that a dead peer is noticed in bounded time on both ends (k = keepalive):
//
//   - Server side (this is what frees the lock of a leader whose host died
//     or was partitioned away): the session GUCs tcp_keepalives_idle = k,
//     tcp_keepalives_interval = k, tcp_keepalives_count = 3 and
//     tcp_user_timeout = 3k make the backend drop the connection, and so
//     the advisory lock, about 4k after the leader went silent (20 s by
//     default). They apply only to TCP connections; over a Unix socket the
//     peer is on the same host and a dead process closes the socket at once.
//   - Client side: the same keepalive and TCP_USER_TIMEOUT on our socket,
//     so a read on a dead connection fails instead of hanging.
//
// The leader itself notices a silent connection sooner, through the
// periodic check (Interval plus its timeout), so a partitioned leader stops
// its job before the server hands the lock to anyone else.
func lockConnConfig(dsn, name string, keepalive time.Duration) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("ha: parse DSN: %w", err)
	}
	userTimeout := keepaliveCount * keepalive
	secs := strconv.Itoa(int(keepalive / time.Second))
	params := map[string]string{
		"tcp_keepalives_idle":     secs,
		"tcp_keepalives_interval": secs,
		"tcp_keepalives_count":    strconv.Itoa(keepaliveCount),
		"tcp_user_timeout":        strconv.FormatInt(userTimeout.Milliseconds(), 10),
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "meshd-leader-" + name
	}
	d := &net.Dialer{
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: keepalive, Interval: keepalive, Count: keepaliveCount},
		Control: func(network, _ string, c syscall.RawConn) error {
			if !strings.HasPrefix(network, "tcp") {
				return nil
			}
			return setUserTimeout(c, userTimeout)
		},
	}
	cfg.DialFunc = d.DialContext
	// hold relies on a cancelled wait leaving the connection usable: a
	// deadline does, a cancel request to the server would not (and would
	// open a connection every Interval).
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	return cfg, nil
}

func (l *Leader) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, l.connConfig)
	if err != nil {
		return nil, fmt.Errorf("ha: connect: %w", err)
	}
	return conn, nil
}

func (l *Leader) tryLock(ctx context.Context, conn *pgx.Conn) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, l.checkTimeout)
	defer cancel()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", l.key).Scan(&ok); err != nil {
		return false, fmt.Errorf("ha: try lock: %w", err)
	}
	return ok, nil
}

// check proves the lock's connection (and so its session lock) is alive.
// It is bounded by its timeout only, not by ctx: pgx closes a connection
// whose query is cancelled, and closing it would free the lock while a
// stopping job may still be running.
func (l *Leader) check(ctx context.Context, conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.checkTimeout)
	defer cancel()
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("check: %w", err)
	}
	return nil
}

// unlock releases the lock explicitly so a successor need not wait for the
// backend to notice the close.
func (l *Leader) unlock(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", l.key); err != nil {
		l.log.Warn().Err(err).Msg("advisory unlock failed; closing the connection releases it")
	}
}

func closeConn(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	_ = conn.Close(ctx) // a dead connection is the usual reason we are here
}
