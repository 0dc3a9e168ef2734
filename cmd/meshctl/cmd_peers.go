package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd/wire"
)

// runPeers lists the mesh's online peers (peers_list, B.6.8), without the
// short-lived connection this command itself makes.
func runPeers(c *cli, fs *pflag.FlagSet) runFunc {
	mesh := fs.String("mesh", "", "mesh slug (default: $MESHCTL_MESH, else your only mesh)")
	asJSON := fs.Bool("json", false, "print the peers as JSON")
	return func([]string) error {
		id, s, err := c.connectMesh(*mesh, "cli", false)
		if err != nil {
			return err
		}
		all, err := s.c.ListPeers(c.ctx)
		got := c.closeCollect(s)
		if err != nil {
			c.showReceived(id.Slug, got)
			return fmt.Errorf("list peers: %w", err)
		}
		peers := []wire.Peer{}
		for _, p := range all {
			if p.SessionID != s.sid {
				peers = append(peers, p)
			}
		}
		if *asJSON {
			return printJSON(c.stdout, map[string]any{"mesh": id.Slug, "peers": peers, "received": receivedLines(id.Slug, got)})
		}
		defer c.showReceived(id.Slug, got)
		if len(peers) == 0 {
			fmt.Fprintf(c.stdout, "Nobody else is online in mesh %s.\n", id.Slug)
			return nil
		}
		rows := make([][]string, len(peers))
		for i, p := range peers {
			you := ""
			if p.MemberPubkey == s.self {
				you = " (you)"
			}
			rows[i] = []string{p.DisplayName + you, p.Status, since(p.ConnectedAt), dash(p.CWD), p.Pubkey}
		}
		table(c.stdout, []string{"NAME", "STATUS", "ONLINE", "CWD", "PUBKEY"}, rows)
		return nil
	}
}

// since renders an RFC 3339 time as a duration ago.
func since(ts string) string {
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}
