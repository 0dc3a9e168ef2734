package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// The command tree is spf13/cobra (docs/cli.md says why): it gives every
// command and group `--help` and `-h`, "did you mean" for a mistyped
// command, `completion bash|zsh|fish` and examples in the help. Each leaf
// defines its flags on its cobra command (pflag: `--name value`,
// `--name=value`, anywhere among the arguments, `--` ends them); a
// mistake exits 2 with the command's usage line, and an unknown flag names
// the command's flags spelled alike.

// examples are shown by `meshctl COMMAND --help`.
var examples = map[string]string{
	"keygen":       "  meshctl keygen --out ~/.config/meshctl/alice.key",
	"login":        "  meshctl login --token \"$(meshd token create --user alice)\" --broker ws://localhost:7900/ws",
	"logout":       "  meshctl logout",
	"whoami":       "  meshctl whoami\n  meshctl whoami --json",
	"mesh create":  "  meshctl mesh create \"Platform Team\" --name alice\n  meshctl mesh create Demo --slug demo --json",
	"mesh list":    "  meshctl mesh list",
	"mesh rename":  "  meshctl mesh rename platform-team \"Platform & Infra\"",
	"mesh delete":  "  meshctl mesh delete platform-team",
	"invite":       "  meshctl invite platform-team --max-uses 5\n  meshctl invite --role admin --json",
	"join":         "  meshctl join https://broker.example/i/AB12CD34 --name bob\n  meshctl join AB12CD34 --broker wss://broker.example/ws",
	"send":         "  meshctl send bob \"tests pass on main\"\n  meshctl send '*' deploy starts in 5 minutes --priority now\n  git log -1 | meshctl send @reviewers -\n  meshctl send bob \"done\" --reply-to 18ed29a3…(the id listen showed)",
	"listen":       "  meshctl listen\n  meshctl listen --json --status working",
	"peers":        "  meshctl peers\n  meshctl peers --mesh platform-team --json",
	"status set":   "  meshctl status set dnd",
	"grants list":  "  meshctl grants list\n  meshctl grants list --mesh platform-team --json",
	"grants set":   "  meshctl grants set 3f1c…(64 hex) none\n  meshctl grants set 3f1c…(64 hex) dm,broadcast",
	"mcp":          "  meshctl mcp            # started by Claude Code, see `meshctl setup claude`",
	"hook":         "  echo '{\"cwd\":\"'$PWD'\"}' | meshctl hook working",
	"setup claude": "  meshctl setup claude              # print what would be merged\n  meshctl setup claude --write      # this project\n  meshctl setup claude --user --write\n  meshctl setup claude --remove",
}

// groups are the parents of two-word commands.
var groups = map[string]string{
	"mesh":   "create, list, rename and delete meshes",
	"status": "set the status of your running listen",
	"grants": "list and set what peers may send you",
	"setup":  "wire meshctl into other tools (Claude Code)",
}

// newRoot builds the command tree for one invocation.
func newRoot(c *cli) *cobra.Command {
	root := &cobra.Command{
		Use:           "meshctl",
		Short:         "talk to a claudemesh-compatible broker (meshd)",
		Version:       version + " (" + gitSHA + ")",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetVersionTemplate("meshctl {{.Version}}\n")
	cmds := commands()
	helps := map[*cobra.Command]func(){}
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		switch h := helps[cmd]; {
		case cmd == root:
			c.printUsage(cmds, c.stdout)
		case h != nil:
			h()
		default:
			_ = cmd.Usage()
		}
	})
	parents := map[string]*cobra.Command{}
	for g, short := range groups {
		parents[g] = &cobra.Command{Use: g, Short: short, SuggestionsMinimumDistance: 2, RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
			}
			return errors.New(msg)
		}}
		root.AddCommand(parents[g])
	}
	for name, cmd := range cmds {
		parent, use := root, name
		if g, sub, ok := strings.Cut(name, " "); ok {
			parent, use = parents[g], sub
		}
		cc := &cobra.Command{
			Use:           use + strings.TrimPrefix(cmd.usage, name),
			Short:         cmd.summary,
			Example:       examples[name],
			Args:          checkArgs(name, cmd),
			SilenceErrors: true,
			SilenceUsage:  true,
		}
		cc.SetFlagErrorFunc(flagError(name, cmd))
		if name == "hook" { // a Claude Code hook never fails: the mistake goes to stderr, exit 0
			cc.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
				fmt.Fprintf(c.stderr, "meshctl hook: %v\n", err)
				return nil
			})
		}
		body := cmd.setup(c, cc.Flags())
		cc.RunE = func(_ *cobra.Command, pos []string) error { return body(pos) }
		cc.InitDefaultHelpFlag()
		cc.Flags().Lookup("help").Usage = "show this help"
		helps[cc] = func() { c.printHelp(name, cmd, cc.Flags()) }
		parent.AddCommand(cc)
	}
	root.AddCommand(&cobra.Command{
		Use:     "version",
		Short:   "print meshctl's version and git SHA",
		Example: "  meshctl version",
		Args:    cobra.NoArgs,
		Run:     func(*cobra.Command, []string) { fmt.Fprintf(c.stdout, "meshctl %s (%s)\n", version, gitSHA) },
	})
	return root
}
