package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/meshd/meshd/store"
)

const legacyAuthUsage = `usage:
  meshd legacy-auth report [--since <duration>] [--json]

Lists who still authenticates with the deprecated body user_id
(BROKER_LEGACY_AUTH=1), per user and route: first and last hit and how many,
most recent first. --since keeps the pairs with a hit within that long (a Go
duration or days, default 7d; 0 lists everything recorded). Replicas write
their hits every 10 s. docs/operations.md "Retiring the legacy auth shim"
walks the drain.
`

// legacyAuthCmd runs `meshd legacy-auth <subcommand>`.
func legacyAuthCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, legacyAuthUsage)
		return errors.New("legacy-auth: missing subcommand")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "report":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, legacyAuthUsage)
		return nil
	default:
		fmt.Fprint(stderr, legacyAuthUsage)
		return fmt.Errorf("legacy-auth: unknown subcommand %q", sub)
	}
	fs := flag.NewFlagSet("legacy-auth report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, legacyAuthUsage) }
	sinceFlag := fs.String("since", "7d", "only pairs with a hit within this long (0: all)")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("legacy-auth report: unexpected argument %q", fs.Arg(0))
	}
	var since time.Duration
	if *sinceFlag != "0" {
		var err error
		if since, err = parseTTL(*sinceFlag); err != nil {
			return fmt.Errorf("legacy-auth report: --since: %w", err)
		}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, newLogger(cfg.LogLevel, stderr), !cfg.SkipMigrate)
	if err != nil {
		return err
	}
	defer st.Close()
	uses, err := st.LegacyAuthReport(ctx, since)
	if err != nil {
		return fmt.Errorf("legacy-auth report: %w", err)
	}
	if *asJSON {
		if uses == nil {
			uses = []store.LegacyAuthUse{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(uses)
	}
	printLegacyAuth(stdout, uses)
	return nil
}

func printLegacyAuth(w io.Writer, uses []store.LegacyAuthUse) {
	users := map[string]bool{}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROUTE\tFIRST HIT\tLAST HIT\tHITS")
	for _, u := range uses {
		users[u.UserID] = true
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", u.UserID, u.Route, u.FirstAt.UTC().Format(time.RFC3339),
			u.LastAt.UTC().Format(time.RFC3339), u.Hits)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d user(s), %d (user, route) pair(s)\n", len(users), len(uses))
}
