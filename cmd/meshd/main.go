// Command meshd is the claudemesh-compatible broker: one stateless replica
// of many behind a load balancer. It only wires packages together; see
// README.md and docs/env-vars.md.
//
//	meshd [serve]                    run the broker (default)
//	meshd migrate                    apply database migrations and exit
//	meshd token create --user <id> [--ttl 30d]   print a new CLI bearer token
//	meshd token list [--user <id>] [--all]       list CLI tokens (ids, never tokens)
//	meshd token revoke --id <id> | --user <id>   revoke CLI tokens
//	meshd audit verify --mesh <id>   verify a mesh's audit chain (id or slug)
//	meshd keys rotate                re-encrypt secrets under BROKER_ENCRYPTION_KEY
//	meshd legacy-auth report [--since 7d] [--json]   who still uses the legacy body user_id auth
//	meshd version                    print version and git SHA
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Stamped by the Makefile (-ldflags -X).
var (
	version = "0.1.0-dev"
	gitSHA  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage:
  meshd [serve]                    run the broker (env: see docs/env-vars.md)
  meshd migrate                    apply database migrations and exit
  meshd token create --user <id> [--ttl 30d]   create a CLI bearer token (printed once)
  meshd token list [--user <id>] [--all]       list CLI tokens (ids, never tokens)
  meshd token revoke --id <id> | --user <id>   revoke one token, or all of a user's
  meshd audit verify --mesh <id>   verify a mesh's audit hash chain (id or slug; exit 1 if broken, 2 if unknown)
  meshd keys rotate                re-encrypt secrets at rest under BROKER_ENCRYPTION_KEY
  meshd legacy-auth report [--since 7d] [--json]   who still uses the legacy body user_id auth
  meshd version                    print version and git SHA
`

// run is main without the process: tests drive it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	if cmd != "serve" {
		getenv = withRunDatabase(getenv, stderr)
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, getenv, stderr)
	case "migrate":
		err = migrate(ctx, getenv, stderr)
	case "token":
		err = token(ctx, args, getenv, stdout, stderr)
	case "audit":
		err = auditCmd(ctx, args, getenv, stdout, stderr)
	case "keys":
		err = keys(ctx, args, getenv, stdout, stderr)
	case "legacy-auth":
		err = legacyAuthCmd(ctx, args, getenv, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "meshd %s (%s)\n", version, gitSHA)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "meshd: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "meshd: %v\n", err)
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// runDatabaseFile is where `make run` records the URL of its throwaway
// PostgreSQL (scripts/pg.sh writes it while the server runs).
const runDatabaseFile = ".data/pg/url"

// withRunDatabase lets the admin commands (token, audit, migrate) find the
// database of a `make run` in the same checkout when DATABASE_URL is unset,
// and says so; serve never guesses.
func withRunDatabase(getenv func(string) string, stderr io.Writer) func(string) string {
	if getenv("DATABASE_URL") != "" {
		return getenv
	}
	b, err := os.ReadFile(runDatabaseFile)
	url := strings.TrimSpace(string(b))
	if err != nil || url == "" {
		return getenv
	}
	fmt.Fprintf(stderr, "meshd: DATABASE_URL unset; using the `make run` database from %s\n", runDatabaseFile)
	return func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return getenv(k)
	}
}
