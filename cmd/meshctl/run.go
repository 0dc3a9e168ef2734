package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
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

// command is one meshctl subcommand.
type command struct {
	usage   string // after "meshctl "
	summary string
	run     func(c *cli, args []string) error
}

// commands maps each command path ("mesh create") to its implementation.
func commands() map[string]command {
	return map[string]command{
		"keygen":       {"keygen [--out FILE] [--json]", "generate an ed25519 member keypair into a 0600 file and print its public key", runKeygen},
		"login":        {"login --token TOKEN [--broker WS_URL]", "save the bearer token from `meshd token create` (checked against the broker)", runLogin},
		"logout":       {"logout", "revoke the saved token on the broker and forget it", runLogout},
		"whoami":       {"whoami [--json]", "show the broker you are logged in to and your identity in each mesh (never secrets)", runWhoami},
		"mesh create":  {"mesh create NAME [--name DISPLAY_NAME] [--slug SLUG] [--key FILE] [--json]", "create a mesh you own; your member key is generated and saved", runMeshCreate},
		"mesh list":    {"mesh list [--json]", "list your meshes (from the broker when logged in, plus the ones you joined)", runMeshList},
		"mesh rename":  {"mesh rename SLUG NEW_NAME…", "rename a mesh you own (its slug stays)", runMeshRename},
		"mesh delete":  {"mesh delete SLUG", "archive a mesh you own", runMeshDelete},
		"invite":       {"invite [SLUG] [--role admin|member] [--max-uses N] [--json]", "create an invite link for a mesh you own (7-day expiry)", runInvite},
		"join":         {"join LINK|CODE|TOKEN [--name NAME] [--broker WS_URL] [--key FILE] [--json]", "join a mesh with an invite; the signature and expiry are checked locally", runJoin},
		"send":         {"send TARGET MESSAGE… [--mesh SLUG] [--priority now|next|low] [--json]", "send to a peer (display name or pubkey, end-to-end encrypted), * (everyone) or @group", runSend},
		"listen":       {"listen [--mesh SLUG] [--json] [--status idle|working|dnd]", "stay connected and print messages as they arrive (--json: one object per line)", runListen},
		"peers":        {"peers [--mesh SLUG] [--json]", "list the peers online in a mesh", runPeers},
		"status set":   {"status set idle|working|dnd [--mesh SLUG]", "set the status of your running `meshctl listen`", runStatusSet},
		"grants list":  {"grants list [--mesh SLUG] [--json]", "show what peers may send you (the grants on your member row)", runGrantsList},
		"grants set":   {"grants set PUBKEY CAP… [--mesh SLUG] [--json]", "set what a peer may send you: caps dm, broadcast, …; `none` blocks, `default` resets", runGrantsSet},
		"hook":         {"hook working|idle", "report this Claude Code session's status to your brokers (a Claude Code hook; reads its JSON on stdin, never fails)", runHook},
		"setup claude": {"setup claude [--write] [--remove] [--user] [--dir DIR] [--mesh SLUG]", "print or merge the Claude Code settings for `meshctl mcp` and the status hooks", runSetupClaude},
		"mcp":          {"mcp [--mesh SLUG] [--name NAME] [--push=false] [--buffer N] [--skills-poll DURATION]", "run a stdio MCP server for Claude Code: live message push and mesh tools (docs/mcp.md)", runMCP},
	}
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg, usage string }

func (e *usageError) Error() string { return e.msg }

func usagef(usage, format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...), usage: usage}
}

// errHelp means --help was printed: exit status 0.
var errHelp = errors.New("help")

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
	case err == nil, errors.Is(err, errHelp):
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

// flags returns a FlagSet for command name whose errors the caller
// reports (parse does).
func flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args for the named command, allowing flags before, between
// and after positional arguments ("--" ends flags). --help prints the
// command's usage to stdout and returns errHelp. want is the exact
// number of positional arguments, or -1 for "at least one", -2 for any.
func (c *cli) parse(name string, fs *flag.FlagSet, args []string, want int) ([]string, error) {
	cmd := commands()[name]
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(c.stdout, "usage: meshctl %s\n\n%s.\n", cmd.usage, cmd.summary)
			if hasFlags(fs) {
				fmt.Fprint(c.stdout, "\nflags:\n")
				printFlags(c.stdout, fs)
			}
			if ex := examples[name]; ex != "" {
				fmt.Fprintf(c.stdout, "\nexamples:\n%s\n", ex)
			}
			return nil, errHelp
		} else if err != nil {
			return nil, usagef(cmd.usage, "%s: %v", name, err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	pos = append(pos, tail...)
	switch {
	case want >= 0 && len(pos) != want:
		return nil, usagef(cmd.usage, "%s takes %d argument(s), got %d", name, want, len(pos))
	case want == -1 && len(pos) == 0:
		return nil, usagef(cmd.usage, "%s needs an argument", name)
	}
	return pos, nil
}

// printFlags lists fs as --name TYPE and its text. Unlike PrintDefaults it
// does not read `quoted` words of the text as the value's placeholder.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		typ, _ := flag.UnquoteUsage(&flag.Flag{Value: f.Value})
		if typ != "" {
			typ = " " + strings.ToUpper(typ)
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "  --%s%s\n      %s%s\n", f.Name, typ, f.Usage, def)
	})
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}
