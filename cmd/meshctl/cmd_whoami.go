package main

import (
	"fmt"

	"github.com/spf13/pflag"
)

// runWhoami shows who this config directory is: the broker logged in to
// (the token only as present or not) and each mesh identity's public half.
func runWhoami(c *cli, fs *pflag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print as JSON")
	return func([]string) error {
		cfg, err := c.loadConfig()
		if err != nil {
			return err
		}
		dir, _ := c.configDir()
		type meshView struct {
			Slug        string `json:"slug"`
			MeshID      string `json:"meshId"`
			MemberID    string `json:"memberId"`
			DisplayName string `json:"displayName"`
			Role        string `json:"role,omitempty"`
			Pubkey      string `json:"pubkey"`
			BrokerURL   string `json:"brokerUrl"`
		}
		meshes := make([]meshView, len(cfg.Meshes))
		for i, m := range cfg.Meshes {
			meshes[i] = meshView{m.Slug, m.MeshID, m.MemberID, m.DisplayName, m.Role, m.Pubkey, m.BrokerURL}
		}
		if *asJSON {
			return printJSON(c.stdout, map[string]any{"configDir": dir, "broker": cfg.Broker, "loggedIn": cfg.Token != "", "meshes": meshes})
		}
		if cfg.Token != "" {
			fmt.Fprintf(c.stdout, "Logged in to %s (token saved in %s).\n", cfg.Broker, dir)
		} else {
			fmt.Fprintf(c.stdout, "Not logged in (config %s).\n", dir)
		}
		if len(meshes) == 0 {
			fmt.Fprintln(c.stdout, "In no mesh yet: `meshctl join <link>` or `meshctl mesh create <name>`.")
			return nil
		}
		rows := make([][]string, len(meshes))
		for i, m := range meshes {
			rows[i] = []string{m.Slug, m.DisplayName, dash(m.Role), m.Pubkey, m.BrokerURL}
		}
		table(c.stdout, []string{"MESH", "NAME", "ROLE", "MEMBER PUBKEY", "BROKER"}, rows)
		return nil
	}
}
