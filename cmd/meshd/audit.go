package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/store"
)

// errChainBroken makes `meshd audit verify` exit 1 after it has printed
// where the chain breaks.
var errChainBroken = errors.New("audit chain broken")

// errEventsMissing makes it exit 1 when acked messages have no
// message_sent event (issue 11: the chain must have no holes).
var errEventsMissing = errors.New("audit events missing for acked messages")

const auditUsage = `usage: meshd audit verify --mesh <id or slug>

Walks the mesh's audit hash chain (docs/protocol.md B.8) oldest first, recomputing
every row's hash from its stored fields and checking that it links to the row
before it, and that every queued or delivered message of the mesh has its
message_sent event in the chain or still in the audit outbox (messages sent
before the outbox migration are not checked). Prints a summary line, and one
more when events are missing; exits 0 when the chain is valid (an empty chain
is valid) and nothing is missing, 1 when it is broken, events are missing or
on error, 2 when no mesh has that id (nor, live, that slug). Reads DATABASE_URL; does not migrate or write anything.
`

// auditCmd runs `meshd audit <subcommand>`.
func auditCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, auditUsage)
		if len(args) == 0 {
			return errors.New("audit: missing subcommand")
		}
		return nil
	}
	if args[0] != "verify" {
		fmt.Fprint(stderr, auditUsage)
		return fmt.Errorf("audit: unknown subcommand %q", args[0])
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stdout, auditUsage) }
	mesh := fs.String("mesh", "", "id or slug of the mesh whose chain to verify (required)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *mesh == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, auditUsage)
		return errors.New("audit verify: --mesh <id or slug> is required and takes no other arguments")
	}
	return auditVerify(ctx, *mesh, getenv, stdout, stderr)
}

func auditVerify(ctx context.Context, ref string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, newLogger(cfg.LogLevel, stderr), false)
	if err != nil {
		return err
	}
	defer st.Close()
	ms, err := st.MeshByRef(ctx, ref)
	switch {
	case errors.Is(err, meshd.ErrNotFound):
		return exitError{code: 2, err: fmt.Errorf("audit verify: unknown mesh %q (give its id or its slug)", ref)}
	case err != nil:
		return fmt.Errorf("audit verify: %w", err)
	}
	meshID := ms.ID
	v, err := st.VerifyAuditDetail(ctx, meshID)
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	if v.Valid {
		fmt.Fprintf(stdout, "mesh %s: %d entries, chain valid\n", meshID, v.Entries)
	} else {
		fmt.Fprintf(stdout, "mesh %s: %d entries, chain BROKEN at row %d (entry %d of %d): %s\n",
			meshID, v.Entries, *v.BrokenAt, v.BrokenIndex, v.Entries, brokenReason(v.Reason))
	}
	missing, err := reportMissing(ctx, st, meshID, stdout)
	switch {
	case err != nil:
		return fmt.Errorf("audit verify: %w", err)
	case !v.Valid:
		return errChainBroken
	case missing:
		return errEventsMissing
	}
	return nil
}

// reportMissing prints how many queued or delivered messages of the mesh
// have no message_sent event, in the chain or still in the outbox.
func reportMissing(ctx context.Context, st *store.Store, meshID string, stdout io.Writer) (bool, error) {
	n, sample, err := st.MissingAuditEvents(ctx, meshID)
	if err != nil || n == 0 {
		return false, err
	}
	fmt.Fprintf(stdout, "mesh %s: %d acked messages have no message_sent event (e.g. %s)\n",
		meshID, n, strings.Join(sample, ", "))
	return true, nil
}

// exitError makes run exit with code instead of 1.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func brokenReason(r string) string {
	if r == "prev_hash" {
		return "prev_hash is not the previous row's hash"
	}
	return "stored fields do not hash to the stored hash"
}
