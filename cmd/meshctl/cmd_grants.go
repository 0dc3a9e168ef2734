package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd"
)

// runGrantsSet sets what the peer with PUBKEY may send you (B.7): the
// entry is stored on your own member row and replaces the defaults (read,
// dm, broadcast, state-read) for that sender. `none` blocks everything,
// `default` removes the entry. It is sent as set_grants over this member's
// own WebSocket (signed hello with the member key), so members who joined
// by invite and have no login can use it too.
func runGrantsSet(c *cli, fs *pflag.FlagSet) runFunc {
	mesh := fs.String("mesh", "", "mesh slug (default: $MESHCTL_MESH, else your only mesh)")
	asJSON := fs.Bool("json", false, "print the merged grants as JSON")
	return func(pos []string) error {
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
		id, err := c.pickMesh(*mesh)
		if err != nil {
			return err
		}
		out, err := c.grantsRequest(id, map[string]any{"type": "set_grants", "grants": map[string]any{strings.ToLower(pos[0]): caps}})
		if err != nil {
			return fmt.Errorf("grants set: %w", err)
		}
		if *asJSON {
			return printJSON(c.stdout, map[string]any{"mesh": id.Slug, "grants": out.Grants})
		}
		printGrants(c, id.Slug, out.Grants)
		return nil
	}
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
			if !slices.Contains(meshd.KnownCaps, cp) {
				return nil, usagef(usage, "unknown capability %q (known: broadcast, dm, file-read, read, state-read, state-write; or none / default)", cp)
			}
			caps = append(caps, cp)
		}
	}
	return caps, nil
}

// runGrantsList shows the grants on your own member row (get_grants over
// your WebSocket).
func runGrantsList(c *cli, fs *pflag.FlagSet) runFunc {
	mesh := fs.String("mesh", "", "mesh slug (default: $MESHCTL_MESH, else your only mesh)")
	asJSON := fs.Bool("json", false, "print the grants as JSON")
	return func([]string) error {
		id, err := c.pickMesh(*mesh)
		if err != nil {
			return err
		}
		out, err := c.grantsRequest(id, map[string]any{"type": "get_grants"})
		if err != nil {
			return fmt.Errorf("grants list: %w", err)
		}
		if *asJSON {
			return printJSON(c.stdout, map[string]any{"mesh": id.Slug, "grants": out.Grants})
		}
		printGrants(c, id.Slug, out.Grants)
		return nil
	}
}

// grantsReply is the broker's {type:"grants"} answer.
type grantsReply struct {
	Grants map[string][]string `json:"grants"`
}

// grantsRequest sends a get_grants or set_grants frame on a one-shot
// connection of the member and returns the broker's grants answer.
func (c *cli) grantsRequest(id *meshIdentity, frame map[string]any) (grantsReply, error) {
	var out grantsReply
	s, err := c.connect(id, "cli", false)
	if err != nil {
		return out, err
	}
	raw, err := s.c.Request(c.ctx, frame, "grants")
	if got := c.closeCollect(s); len(got) > 0 {
		c.showReceived(id.Slug, got)
	}
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("bad grants answer: %w", err)
	}
	return out, nil
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
