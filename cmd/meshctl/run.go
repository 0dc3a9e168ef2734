package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// cli is one invocation: its environment and standard streams. Commands
// get it instead of touching os.* so tests drive run directly.
type cli struct {
	ctx    context.Context
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// command is one meshctl subcommand. setup defines the command's flags on
// the cobra command's flag set and returns what runs with the positional
// arguments once cobra parsed them.
type command struct {
	usage   string // after "meshctl "
	summary string
	args    int // positional arguments: exactly n, or anyArgs / atLeastOne
	setup   func(c *cli, fs *pflag.FlagSet) runFunc
}

// runFunc runs a command with its positional arguments.
type runFunc func(pos []string) error

const (
	atLeastOne = -1
	anyArgs    = -2
)

// commands maps each command path ("mesh create") to its implementation.
func commands() map[string]command {
	return map[string]command{
		"keygen":       {"keygen [--out FILE] [--json]", "generate an ed25519 member keypair into a 0600 file and print its public key", 0, runKeygen},
		"login":        {"login --token TOKEN [--broker WS_URL]", "save the bearer token from `meshd token create` (checked against the broker)", 0, runLogin},
		"logout":       {"logout", "revoke the saved token on the broker and forget it", 0, runLogout},
		"whoami":       {"whoami [--json]", "show the broker you are logged in to and your identity in each mesh (never secrets)", 0, runWhoami},
		"mesh create":  {"mesh create NAME [--name DISPLAY_NAME] [--slug SLUG] [--key FILE] [--json]", "create a mesh you own; your member key is generated and saved", 1, runMeshCreate},
		"mesh list":    {"mesh list [--json]", "list your meshes (from the broker when logged in, plus the ones you joined)", 0, runMeshList},
		"mesh rename":  {"mesh rename SLUG NEW_NAME…", "rename a mesh you own (its slug stays)", atLeastOne, runMeshRename},
		"mesh delete":  {"mesh delete SLUG", "archive a mesh you own", 1, runMeshDelete},
		"invite":       {"invite [SLUG] [--role admin|member] [--max-uses N] [--json]", "create an invite link for a mesh you own (7-day expiry)", anyArgs, runInvite},
		"join":         {"join LINK|CODE|TOKEN [--name NAME] [--broker WS_URL] [--key FILE] [--json]", "join a mesh with an invite; the signature and expiry are checked locally", 1, runJoin},
		"send":         {"send TARGET MESSAGE… [--mesh SLUG] [--priority now|next|low] [--reply-to MESSAGE_ID] [--json]", "send to a peer (display name or pubkey, end-to-end encrypted), * (everyone) or @group", atLeastOne, runSend},
		"listen":       {"listen [--mesh SLUG] [--json] [--status idle|working|dnd]", "stay connected and print messages as they arrive (--json: one object per line)", 0, runListen},
		"peers":        {"peers [--mesh SLUG] [--json]", "list the peers online in a mesh", 0, runPeers},
		"status set":   {"status set idle|working|dnd [--mesh SLUG]", "set the status of your running `meshctl listen`", 1, runStatusSet},
		"grants list":  {"grants list [--mesh SLUG] [--json]", "show what peers may send you (the grants on your member row)", 0, runGrantsList},
		"grants set":   {"grants set PUBKEY CAP… [--mesh SLUG] [--json]", "set what a peer may send you: caps dm, broadcast, …; `none` blocks, `default` resets", atLeastOne, runGrantsSet},
		"hook":         {"hook working|idle", "report this Claude Code session's status to your brokers (a Claude Code hook; reads its JSON on stdin, never fails)", anyArgs, runHook},
		"setup claude": {"setup claude [--write] [--remove] [--user] [--dir DIR] [--mesh SLUG]", "print or merge the Claude Code settings for `meshctl mcp` and the status hooks", 0, runSetupClaude},
		"mcp":          {"mcp [--mesh SLUG] [--name NAME] [--push=false] [--buffer N] [--skills-poll DURATION]", "run a stdio MCP server for Claude Code: live message push and mesh tools (docs/mcp.md)", 0, runMCP},
	}
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg, usage string }

func (e *usageError) Error() string { return e.msg }

func usagef(usage, format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...), usage: usage}
}

// run is main without the process: it returns the exit status (0 ok, 1
// failure, 2 usage) and prints failures as one line on stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{ctx: ctx, getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		c.printUsage(commands(), stdout)
		return 2
	}
	root := newRoot(c)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command ") {
		// cobra: unknown command "x" for "meshctl mesh"\n\nDid you mean this?…
		fmt.Fprintf(stderr, "meshctl: unknown command %q (run `meshctl --help`)%s\n", strings.Join(args[:min(2, len(args))], " "), suggestion(err.Error()))
		return 2
	}
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "meshctl: %s\nusage: meshctl %s\n", ue.msg, ue.usage)
		return 2
	}
	if strings.HasPrefix(err.Error(), "unknown flag") || strings.HasPrefix(err.Error(), "unknown shorthand") || strings.Contains(err.Error(), "accepts 0 arg") {
		fmt.Fprintf(stderr, "meshctl: %v\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "meshctl: %v\n", err)
	return 1
}

// suggestion keeps cobra's "did you mean" list on one line.
func suggestion(msg string) string {
	_, s, ok := strings.Cut(msg, "Did you mean this?")
	if !ok {
		return ""
	}
	return "; did you mean " + strings.Join(strings.Fields(s), " or ") + "?"
}

func (c *cli) printUsage(cmds map[string]command, w io.Writer) {
	// Workflow order: set up, enrol, talk.
	names := []string{"keygen", "login", "logout", "mesh create", "mesh list", "mesh rename", "mesh delete", "invite", "join",
		"send", "listen", "peers", "status set", "grants list", "grants set", "mcp", "hook", "setup claude", "whoami"}
	fmt.Fprint(w, "meshctl — talk to a claudemesh-compatible broker (meshd)\n\nusage:\n")
	for _, n := range names {
		fmt.Fprintf(w, "  meshctl %-12s %s\n", n, cmds[n].summary)
	}
	fmt.Fprint(w, "  meshctl version      print meshctl's version\n  meshctl completion   print a bash, zsh or fish completion script\n")
	fmt.Fprint(w, "\nRun `meshctl COMMAND --help` for its flags and examples. Config: $MESHCTL_CONFIG_DIR or ~/.config/meshctl.\n")
}

// checkArgs is a command's positional argument rule as cobra.Args.
func checkArgs(name string, cmd command) cobra.PositionalArgs {
	return func(_ *cobra.Command, pos []string) error {
		switch {
		case cmd.args >= 0 && len(pos) != cmd.args:
			return usagef(cmd.usage, "%s takes %d argument(s), got %d", name, cmd.args, len(pos))
		case cmd.args == atLeastOne && len(pos) == 0:
			return usagef(cmd.usage, "%s needs an argument", name)
		}
		return nil
	}
}

// printHelp is `meshctl NAME --help` (or -h): usage, summary, flags and
// examples on stdout.
func (c *cli) printHelp(name string, cmd command, fs *pflag.FlagSet) {
	fmt.Fprintf(c.stdout, "usage: meshctl %s\n\n%s.\n\nflags:\n", cmd.usage, cmd.summary)
	printFlags(c.stdout, fs, cmd.usage)
	if ex := examples[name]; ex != "" {
		fmt.Fprintf(c.stdout, "\nexamples:\n%s\n", ex)
	}
}

// printFlags lists fs as --name VALUE and its text; VALUE is the
// placeholder the usage line gives the flag (`--mesh SLUG`), else its
// type. Unlike pflag's FlagUsages it does not read `quoted` words of the
// text as the placeholder.
func printFlags(w io.Writer, fs *pflag.FlagSet, usage string) {
	fs.VisitAll(func(f *pflag.Flag) {
		name := "--" + f.Name
		if f.Shorthand != "" {
			name = "-" + f.Shorthand + ", " + name
		}
		typ := ""
		if f.Value.Type() != "bool" {
			typ = " " + strings.ToUpper(f.Value.Type())
			if m := regexp.MustCompile(`--` + regexp.QuoteMeta(f.Name) + ` ([^\]\s]+)`).FindStringSubmatch(usage); m != nil {
				typ = " " + m[1]
			}
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  %s%s\n      %s%s\n", name, typ, f.Usage, def)
	})
}

// flagError turns pflag's complaint about a command line into a usage
// error (exit 2) with the command's usage line and, for an unknown flag,
// the command's flags that are spelled alike.
func flagError(name string, cmd command) func(*cobra.Command, error) error {
	return func(cc *cobra.Command, err error) error {
		msg := err.Error()
		if bad, short, ok := unknownFlag(msg); ok {
			if s := similarFlags(cc.Flags(), bad, short); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
		}
		return usagef(cmd.usage, "%s: %s", name, msg)
	}
}

// unknownFlag extracts the flag from pflag's "unknown flag: --x" and
// "unknown shorthand flag: 'x' in -xyz" (short: what followed the single
// dash, as in Go-style `-json`).
func unknownFlag(msg string) (flag string, short, ok bool) {
	if f, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		return f, false, true
	}
	if _, in, ok := strings.Cut(msg, "unknown shorthand flag: "); ok {
		if _, f, ok := strings.Cut(in, " in -"); ok {
			return f, true, true
		}
	}
	return "", false, false
}

// similarFlags lists fs's flags within two edits of bad, or that start
// with bad (two letters at least, one after a single dash), as --name.
func similarFlags(fs *pflag.FlagSet, bad string, short bool) []string {
	bad, _, _ = strings.Cut(bad, "=")
	prefix := 2
	if short {
		prefix = 1
	}
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		if levenshtein(bad, f.Name) <= 2 || (len(bad) >= prefix && strings.HasPrefix(f.Name, bad)) {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

// levenshtein is the edit distance of a and b (bytes; flag names are ASCII).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
