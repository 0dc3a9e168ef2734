package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/meshd/meshd/store"
)

const tokenUsage = `usage:
  meshd token create --user <id> [--ttl <duration>]   print a new CLI bearer token (once)
  meshd token list [--user <id>] [--all]              list tokens (active only unless --all)
  meshd token revoke (--id <token id> | --user <id>)  revoke one token, or all of a user's

--ttl takes a Go duration (90m, 12h) or days (30d); without it the token does
not expire. Only a token's SHA-256 is stored: list shows ids, never tokens.
Each create and revoke is logged at info with "audit":true (meshd's audit
chain is per mesh; tokens belong to users, not meshes).
`

// token runs `meshd token <subcommand>`.
func token(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return errors.New("token: missing subcommand")
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("token "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, tokenUsage) }
	user := fs.String("user", "", "user id")
	var ttl *string
	var id *string
	var all *bool
	switch sub {
	case "create":
		ttl = fs.String("ttl", "", "expire after this long (e.g. 720h, 30d); default never")
	case "list":
		all = fs.Bool("all", false, "include revoked and expired tokens")
	case "revoke":
		id = fs.String("id", "", "token id (from meshd token list)")
	case "help", "-h", "--help":
		fmt.Fprint(stdout, tokenUsage)
		return nil
	default:
		fmt.Fprint(stderr, tokenUsage)
		return fmt.Errorf("token: unknown subcommand %q", sub)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("token %s: unexpected argument %q", sub, fs.Arg(0))
	}
	var lifetime time.Duration
	switch sub {
	case "create":
		if *user == "" {
			return errors.New("token create: --user is required")
		}
		var err error
		if lifetime, err = parseTTL(*ttl); err != nil {
			return fmt.Errorf("token create: --ttl: %w", err)
		}
	case "revoke":
		if (*id == "") == (*user == "") {
			return errors.New("token revoke: give exactly one of --id and --user")
		}
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel, stderr)
	st, err := openStore(ctx, cfg, log, !cfg.SkipMigrate)
	if err != nil {
		return err
	}
	defer st.Close()
	audit := func() *zerolog.Event { return log.Info().Bool("audit", true).Str("actor", "operator") }
	switch sub {
	case "create":
		tok, tid, err := st.CreateCLITokenTTL(ctx, *user, lifetime)
		if err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		ev := audit().Str("user_id", *user).Str("token_id", tid)
		if lifetime > 0 {
			ev = ev.Dur("ttl", lifetime)
		}
		ev.Msg("cli token created")
		fmt.Fprintln(stdout, tok)
	case "list":
		list, err := st.ListCLITokens(ctx, *user, *all)
		if err != nil {
			return fmt.Errorf("token list: %w", err)
		}
		printTokens(stdout, list)
	case "revoke":
		ids, err := st.RevokeCLITokens(ctx, *id, *user)
		if err != nil {
			return fmt.Errorf("token revoke: %w", err)
		}
		for _, r := range ids {
			audit().Str("token_id", r).Str("by_user", *user).Msg("cli token revoked")
		}
		if len(ids) == 0 {
			return errors.New("token revoke: no active token matched")
		}
		fmt.Fprintf(stdout, "revoked %d token(s): %s\n", len(ids), strings.Join(ids, " "))
	}
	return nil
}

// parseTTL accepts a Go duration or a whole number of days ("30d"); "" is 0
// (no expiry).
func parseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, fmt.Errorf("%q: want a duration like 12h or 30d", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%q: want a duration like 12h or 30d", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: must be positive", s)
	}
	return d, nil
}

func printTokens(w io.Writer, list []store.CLITokenInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSER\tCREATED\tLAST SEEN\tEXPIRES\tSTATE\tHOST")
	ts := func(t *time.Time, none string) string {
		if t == nil {
			return none
		}
		return t.UTC().Format(time.RFC3339)
	}
	for _, i := range list {
		state := "active"
		switch {
		case i.RevokedAt != nil:
			state = "revoked " + ts(i.RevokedAt, "")
		case !i.Active:
			state = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.UserID, ts(&i.CreatedAt, ""),
			ts(i.LastSeenAt, "never"), ts(i.ExpiresAt, "never"), state, orDefault(i.Hostname, "-"))
	}
	tw.Flush()
}
