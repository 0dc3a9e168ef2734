package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd/client"
)

// runMeshCreate creates a mesh owned by the logged-in user. The broker
// holds the mesh's owner signing key; this user's member key is generated
// here (or read with --key) and only its public half is sent.
func runMeshCreate(c *cli, fs *pflag.FlagSet) runFunc {
	slug := fs.String("slug", "", "URL slug (default: derived from the name)")
	keyFile := fs.String("key", "", "use the member key in this file (from `meshctl keygen`) instead of a new one")
	name := fs.String("name", "", "your display name in the mesh (default: $USER)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(pos []string) error {
		cfg, base, token, err := c.loggedIn()
		if err != nil {
			return err
		}
		id := client.GenerateIdentity()
		if *keyFile != "" {
			if id, err = readKeyFile(*keyFile); err != nil {
				return err
			}
		}
		display := c.displayName(*name)
		req := map[string]string{"name": pos[0], "pubkey": id.Pubkey, "display_name": display}
		if *slug != "" {
			req["slug"] = *slug
		}
		var out struct {
			ID       string `json:"id"`
			Slug     string `json:"slug"`
			Name     string `json:"name"`
			MemberID string `json:"member_id"`
		}
		if err := c.call(base, "POST", "/cli/mesh/create", token, req, &out); err != nil {
			return fmt.Errorf("mesh create: %w", err)
		}
		cfg.put(meshIdentity{MeshID: out.ID, MemberID: out.MemberID, Slug: out.Slug, Name: out.Name, Pubkey: id.Pubkey,
			SecretKey: id.SecretHex(), BrokerURL: cfg.Broker, DisplayName: display, Role: "admin"})
		if err := c.saveConfig(cfg); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, map[string]string{"id": out.ID, "slug": out.Slug, "name": out.Name, "member_id": out.MemberID, "pubkey": id.Pubkey})
		}
		fmt.Fprintf(c.stdout, "Created mesh %q (slug %s). You are its owner, %q; your member key %s is saved.\nNext: meshctl invite %s\n",
			out.Name, out.Slug, display, short(id.Pubkey), out.Slug)
		return nil
	}
}

// meshRow is one line of `mesh list`.
type meshRow struct {
	ID          string `json:"id"`
	Slug        string `json:"slug"`
	Name        string `json:"name"`
	Role        string `json:"role"`
	IsOwner     bool   `json:"is_owner"`
	MemberCount *int   `json:"member_count,omitempty"`
	ActivePeers *int   `json:"active_peers,omitempty"`
	JoinedAt    string `json:"joined_at,omitempty"`
	BrokerURL   string `json:"broker_url"`
	Identity    bool   `json:"identity"` // a member key for it is saved here
}

// runMeshList shows the broker's view of the user's meshes (when logged
// in) merged with the meshes joined from this machine.
func runMeshList(c *cli, fs *pflag.FlagSet) runFunc {
	asJSON := fs.Bool("json", false, "print the list as JSON")
	return func([]string) error {
		cfg, err := c.loadConfig()
		if err != nil {
			return err
		}
		rows, err := c.remoteMeshes(cfg)
		if err != nil {
			return fmt.Errorf("mesh list: %w", err)
		}
		seen := map[string]bool{}
		for i := range rows {
			seen[rows[i].ID] = true
			rows[i].Identity = cfg.find(rows[i].ID) != nil
		}
		for _, m := range cfg.Meshes {
			if !seen[m.MeshID] {
				rows = append(rows, meshRow{ID: m.MeshID, Slug: m.Slug, Name: m.Name, Role: dash(m.Role), BrokerURL: m.BrokerURL, Identity: true})
			}
		}
		if *asJSON {
			return printJSON(c.stdout, map[string]any{"meshes": rows})
		}
		if len(rows) == 0 {
			fmt.Fprintln(c.stdout, "No meshes yet: `meshctl mesh create <name>` or `meshctl join <link>`.")
			return nil
		}
		lines := make([][]string, len(rows))
		for i, r := range rows {
			owner, key := "", "no"
			if r.IsOwner {
				owner = "yes"
			}
			if r.Identity {
				key = "yes"
			}
			lines[i] = []string{r.Slug, r.Name, r.Role, dash(owner), count(r.MemberCount), count(r.ActivePeers), key, r.BrokerURL}
		}
		table(c.stdout, []string{"SLUG", "NAME", "ROLE", "OWNER", "MEMBERS", "ONLINE", "KEY SAVED", "BROKER"}, lines)
		return nil
	}
}

func count(n *int) string {
	if n == nil {
		return "-"
	}
	return strconv.Itoa(*n)
}

// remoteMeshes is GET /cli/meshes, or nothing when not logged in.
func (c *cli) remoteMeshes(cfg *config) ([]meshRow, error) {
	if cfg.Token == "" {
		return nil, nil
	}
	base, token, err := c.authed(cfg)
	if err != nil {
		return nil, err
	}
	var out struct{ Meshes []meshRow }
	if err := c.call(base, "GET", "/cli/meshes", token, nil, &out); err != nil {
		return nil, err
	}
	for i := range out.Meshes {
		if t, err := time.Parse(time.RFC3339, out.Meshes[i].JoinedAt); err == nil {
			out.Meshes[i].JoinedAt = t.UTC().Format(time.RFC3339)
		}
	}
	return out.Meshes, nil
}

// runMeshRename renames a mesh the user owns; its slug stays.
func runMeshRename(c *cli, fs *pflag.FlagSet) runFunc {
	return func(pos []string) error {
		if len(pos) < 2 {
			return usagef(commands()["mesh rename"].usage, "mesh rename needs a slug and the new name")
		}
		cfg, base, token, err := c.loggedIn()
		if err != nil {
			return err
		}
		var out struct{ ID, Slug, Name string }
		body := map[string]string{"name": strings.Join(pos[1:], " ")}
		if err := c.call(base, "POST", "/cli/mesh/"+url.PathEscape(pos[0])+"/rename", token, body, &out); err != nil {
			return fmt.Errorf("mesh rename: %w", err)
		}
		if m := cfg.find(out.ID); m != nil {
			m.Name = out.Name
			if err := c.saveConfig(cfg); err != nil {
				return err
			}
		}
		fmt.Fprintf(c.stdout, "Renamed mesh %s to %q (the slug stays %s).\n", out.Slug, out.Name, out.Slug)
		return nil
	}
}

// runMeshDelete archives a mesh the user owns and forgets its saved key.
func runMeshDelete(c *cli, fs *pflag.FlagSet) runFunc {
	return func(pos []string) error {
		cfg, base, token, err := c.loggedIn()
		if err != nil {
			return err
		}
		if err := c.call(base, "DELETE", "/cli/mesh/"+url.PathEscape(pos[0]), token, nil, nil); err != nil {
			return fmt.Errorf("mesh delete: %w", err)
		}
		if m := cfg.find(pos[0]); m != nil {
			cfg.remove(m.MeshID)
			if err := c.saveConfig(cfg); err != nil {
				return err
			}
		}
		fmt.Fprintf(c.stdout, "Deleted mesh %s (archived on the broker; its members can no longer connect).\n", pos[0])
		return nil
	}
}
