package main

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// knownCaps are the capability names of B.7 (only dm and broadcast are
// enforced by brokers today).
var knownCaps = map[string]bool{"read": true, "dm": true, "broadcast": true, "state-read": true, "state-write": true, "file-read": true}

// runGrantsSet sets what the peer with PUBKEY may send you (B.7): the
// entry is stored on your own member row and replaces the defaults (read,
// dm, broadcast, state-read) for that sender. `none` blocks everything,
// `default` removes the entry.
func runGrantsSet(c *cli, args []string) error {
	fs := flags("grants set")
	mesh := fs.String("mesh", "", "mesh slug (default: $MESHCTL_MESH, else your only mesh)")
	asJSON := fs.Bool("json", false, "print the merged grants as JSON")
	pos, err := c.parse("grants set", fs, args, -1)
	if err != nil {
		return err
	}
	usage := commands()["grants set"].usage
	if len(pos) < 2 {
		return usagef(usage, "grants set needs a pubkey and at least one capability (or none / default)")
	}
	if !hex64.MatchString(pos[0]) {
		return usagef(usage, "%q is not a 64-hex pubkey (see `meshctl peers --json`)", pos[0])
	}
	caps, err := parseCaps(pos[1:], usage)
	if err != nil {
		return err
	}
	cfg, err := c.loadConfig()
	if err != nil {
		return err
	}
	id, err := c.pick(cfg, *mesh)
	if err != nil {
		return err
	}
	base, token, err := c.authed(cfg)
	if err != nil {
		return err
	}
	var out struct{ Grants map[string][]string }
	body := map[string]any{"grants": map[string]any{strings.ToLower(pos[0]): caps}}
	if err := c.call(base, "POST", "/cli/mesh/"+url.PathEscape(id.Slug)+"/grants", token, body, &out); err != nil {
		return fmt.Errorf("grants set: %w", err)
	}
	if *asJSON {
		return printJSON(c.stdout, map[string]any{"mesh": id.Slug, "grants": out.Grants})
	}
	printGrants(c, id.Slug, out.Grants)
	return nil
}

// parseCaps turns the arguments into the grants value: a list, [] for
// none, nil (JSON null, delete) for default.
func parseCaps(args []string, usage string) ([]string, error) {
	if len(args) == 1 && args[0] == "none" {
		return []string{}, nil
	}
	if len(args) == 1 && args[0] == "default" {
		return nil, nil
	}
	caps := []string{}
	for _, a := range args {
		for _, cp := range strings.Split(a, ",") {
			if cp = strings.TrimSpace(cp); cp == "" {
				continue
			}
			if !knownCaps[cp] {
				return nil, usagef(usage, "unknown capability %q (known: broadcast, dm, file-read, read, state-read, state-write; or none / default)", cp)
			}
			caps = append(caps, cp)
		}
	}
	return caps, nil
}

func printGrants(c *cli, slug string, grants map[string][]string) {
	if len(grants) == 0 {
		fmt.Fprintf(c.stdout, "No grants in mesh %s: every peer has the defaults (read, dm, broadcast, state-read).\n", slug)
		return
	}
	keys := make([]string, 0, len(grants))
	for k := range grants {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rows := make([][]string, len(keys))
	for i, k := range keys {
		caps := strings.Join(grants[k], ",")
		if caps == "" {
			caps = "(blocked)"
		}
		rows[i] = []string{k, caps}
	}
	fmt.Fprintf(c.stdout, "Grants on your member in mesh %s:\n", slug)
	table(c.stdout, []string{"PEER PUBKEY", "MAY SEND"}, rows)
}
