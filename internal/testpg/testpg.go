// Package testpg gives tests a real, throwaway PostgreSQL. When
// MESHD_TEST_DATABASE_URL names a running server (the Makefile starts one),
// tests use it; otherwise Main starts a private cluster with initdb/pg_ctl in
// a temporary directory (as the postgres user when running as root, because
// initdb refuses root) and stops it when the package's tests end. Each test
// gets its own database, dropped at cleanup.
package testpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names an already running server to use instead of starting one.
const EnvURL = "MESHD_TEST_DATABASE_URL"

var (
	mu       sync.Mutex
	adminURL string
)

// Main runs the package's tests against a real PostgreSQL: it starts a
// private cluster unless EnvURL is set, runs m, stops the cluster and exits.
func Main(m *testing.M) {
	if u := os.Getenv(EnvURL); u != "" {
		adminURL = u
		os.Exit(m.Run())
	}
	c, err := Start(context.Background(), "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "testpg: %v\n", err)
		os.Exit(1)
	}
	adminURL = c.URL
	code := m.Run()
	c.Stop()
	os.Exit(code)
}

// AdminURL returns the URL of the server's postgres database.
func AdminURL(t testing.TB) string {
	mu.Lock()
	defer mu.Unlock()
	if adminURL == "" {
		if u := os.Getenv(EnvURL); u != "" {
			adminURL = u
		} else {
			t.Fatal("testpg: no server; call testpg.Main from TestMain or set " + EnvURL)
		}
	}
	return adminURL
}

// NewDatabase creates an empty database for t and returns its URL; it is
// dropped when t ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("testpg: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testpg: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return withDB(admin, name)
}

func withDB(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}

// Cluster is a PostgreSQL server started by Start.
type Cluster struct {
	Dir  string
	Port int
	URL  string
	user string
}

// Start runs initdb (unless dir already holds a cluster) and pg_ctl start on
// a free loopback port. An empty dir means a new temporary directory.
func Start(ctx context.Context, dir string) (*Cluster, error) {
	if dir == "" {
		d, err := os.MkdirTemp("", "meshd-pg-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	runAs, err := pgUser()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, user: runAs}
	if err := c.prepareDir(); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if out, err := c.run(ctx, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
			return nil, fmt.Errorf("initdb: %w: %s", err, out)
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c.Port = port
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c timezone=UTC", port, dir)
	if out, err := c.run(ctx, "pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return nil, fmt.Errorf("pg_ctl start: %w: %s %s", err, out, log)
	}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return c, nil
}

// Stop stops the server and removes its directory.
func (c *Cluster) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = c.run(ctx, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop")
	_ = os.RemoveAll(c.Dir)
}

// StopServer stops the server but keeps its data (tests of DB outages).
func (c *Cluster) StopServer() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.run(ctx, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "fast", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %w: %s", err, out)
	}
	return nil
}

// Restart starts a stopped server again on the same port.
func (c *Cluster) Restart() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c timezone=UTC", c.Port, c.Dir)
	out, err := c.run(ctx, "pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-l", filepath.Join(c.Dir, "log"), "-o", opts, "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start: %w: %s", err, out)
	}
	return nil
}

func (c *Cluster) prepareDir() error {
	if c.user == "" {
		return nil
	}
	u, err := user.Lookup(c.user)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	return os.Chown(c.Dir, uid, gid)
}

// run runs a PostgreSQL binary, as c.user when we are root.
func (c *Cluster) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	bin, err := findBin(name)
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	if c.user != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.user, "--", bin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, bin, args...)
	}
	cmd.Dir = os.TempDir()
	return cmd.CombinedOutput()
}

// pgUser returns the unprivileged user to run PostgreSQL as when we are
// root ("" when not root), creating a system user if there is none.
func pgUser() (string, error) {
	if os.Geteuid() != 0 {
		return "", nil
	}
	for _, name := range []string{"postgres", "meshd-pg"} {
		if _, err := user.Lookup(name); err == nil {
			return name, nil
		}
	}
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "meshd-pg").CombinedOutput(); err != nil {
		return "", fmt.Errorf("useradd meshd-pg: %w: %s", err, out)
	}
	return "meshd-pg", nil
}

func findBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return "", fmt.Errorf("%s not found: install PostgreSQL server binaries (Debian: postgresql)", name)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Quote returns s as a SQL identifier.
func Quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
