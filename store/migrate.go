package store

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/meshd/meshd"
)

// migrationFS holds meshd's own versioned schema (A.3-2). Files are applied
// in lexicographic order and never edited once released: a changed file is
// only warned about, so a fix must be a new file. Numbers need not be
// contiguous: 0006 was taken by a migration that was dropped before it was
// ever committed, and renumbering 0007+ would make databases that applied
// them by name apply them twice.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLockID is upstream's migration lock (B.16, written 74737_73831
// there), so a meshd replica and an upstream broker never migrate at once.
const migrationLockID int64 = 7473773831

// Migration lock polling (B.16): try every 2 s for up to 60 s, then give up
// rather than start a replica on a schema it did not check.
const (
	migrateLockEvery = 2 * time.Second
	migrateLockWait  = 60 * time.Second
)

// Migration names one embedded migration file and the lowercase hex SHA-256
// of its contents. /health/ready accepts either as EXPECTED_MIGRATION.
type Migration struct {
	Name   string
	SHA256 string
}

type migrationFile struct {
	Migration
	sql string
}

// Migrations lists the embedded migrations in the order Migrate applies them.
func Migrations() []Migration {
	files := loadMigrations()
	out := make([]Migration, len(files))
	for i, f := range files {
		out[i] = f.Migration
	}
	return out
}

func loadMigrations() []migrationFile {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		panic(fmt.Sprintf("store: embedded migrations: %v", err)) // a bad pattern is a build bug
	}
	sort.Strings(names)
	out := make([]migrationFile, 0, len(names))
	for _, n := range names {
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			panic(fmt.Sprintf("store: embedded migration %s: %v", n, err))
		}
		sum := sha256.Sum256(b)
		out = append(out, migrationFile{
			Migration: Migration{Name: strings.TrimPrefix(n, "migrations/"), SHA256: hex.EncodeToString(sum[:])},
			sql:       string(b),
		})
	}
	return out
}

// Migrate applies every embedded migration not yet recorded in
// mesh.__cmh_migrations (B.16, A.3-2). It holds the session advisory lock
// 7473773831 on a dedicated connection (polled every 2 s for up to 60 s;
// ErrMigrationLock after that), so replicas starting together apply each file
// exactly once; each file runs in its own transaction together with its
// record. An applied file whose SHA-256 changed is logged as a warning, not
// an error.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	// Closing the session frees the advisory lock even if unlocking failed.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "SET lock_timeout = '60000ms'"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := acquireMigrationLock(ctx, conn); err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(cctx, "SELECT pg_advisory_unlock($1)", migrationLockID)
	}()
	return s.applyMigrations(ctx, conn)
}

// acquireMigrationLock polls pg_try_advisory_lock rather than blocking in
// pg_advisory_lock so that the wait is bounded and cancellable.
func acquireMigrationLock(ctx context.Context, conn *pgx.Conn) error {
	deadline := time.Now().Add(migrateLockWait)
	for {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", migrationLockID).Scan(&ok); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		if ok {
			return nil
		}
		if time.Now().Add(migrateLockEvery).After(deadline) {
			return fmt.Errorf("migrate: %w after %s", ErrMigrationLock, migrateLockWait)
		}
		t := time.NewTimer(migrateLockEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("migrate: lock: %w", context.Cause(ctx))
		case <-t.C:
		}
	}
}

func (s *Store) applyMigrations(ctx context.Context, conn *pgx.Conn) error {
	const ddl = `CREATE SCHEMA IF NOT EXISTS mesh;
CREATE TABLE IF NOT EXISTS mesh.__cmh_migrations (
	filename   text PRIMARY KEY,
	sha256     text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`
	if _, err := conn.Exec(ctx, ddl); err != nil {
		return fmt.Errorf("migrate: bookkeeping table: %w", err)
	}
	applied, err := appliedMigrations(ctx, conn)
	if err != nil {
		return err
	}
	for _, f := range loadMigrations() {
		if sum, ok := applied[f.Name]; ok {
			if sum != f.SHA256 {
				s.log.Warn().Str("migration", f.Name).Str("applied_sha256", sum).Str("file_sha256", f.SHA256).
					Msg("applied migration differs from embedded file")
			}
			continue
		}
		if err := applyOne(ctx, conn, f); err != nil {
			return err
		}
		s.log.Info().Str("migration", f.Name).Str("sha256", f.SHA256).Msg("migration applied")
	}
	return nil
}

func appliedMigrations(ctx context.Context, conn *pgx.Conn) (map[string]string, error) {
	rows, err := conn.Query(ctx, "SELECT filename, sha256 FROM mesh.__cmh_migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: read applied: %w", err)
	}
	applied := map[string]string{}
	var name, sum string
	_, err = pgx.ForEachRow(rows, []any{&name, &sum}, func() error {
		applied[name] = sum
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("migrate: read applied: %w", err)
	}
	return applied, nil
}

func applyOne(ctx context.Context, conn *pgx.Conn, f migrationFile) error {
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// No arguments: pgx uses the simple protocol, which runs a
		// multi-statement file in one round trip.
		if _, err := tx.Exec(ctx, f.sql); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO mesh.__cmh_migrations (filename, sha256) VALUES ($1, $2)", f.Name, f.SHA256)
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate: %s: %w", f.Name, err)
	}
	return nil
}

// LatestApplied returns the newest applied migration (by file name) and the
// SHA-256 recorded for it, for the /health/ready EXPECTED_MIGRATION gate
// (A.3-1). meshd.ErrNotFound when nothing has been applied yet.
func (s *Store) LatestApplied(ctx context.Context) (name, sha string, err error) {
	err = s.pool.QueryRow(ctx,
		"SELECT filename, sha256 FROM mesh.__cmh_migrations ORDER BY filename DESC LIMIT 1").Scan(&name, &sha)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") { // undefined table / schema
		err = meshd.ErrNotFound
	}
	if err != nil {
		return "", "", fmt.Errorf("latest migration: %w", notFound(err))
	}
	return name, sha, nil
}
