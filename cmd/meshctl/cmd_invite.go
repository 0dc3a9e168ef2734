package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd/wire"
)

// inviteResult is the broker's answer to POST /cli/mesh/:slug/invite.
type inviteResult struct {
	URL       string `json:"url"`
	Code      string `json:"code"`
	ExpiresAt string `json:"expires_at"`
	Token     string `json:"token"`
	JoinURL   string `json:"join_url"` // the token link, for the claudemesh CLI
	Role      string `json:"role"`
	MaxUses   int    `json:"max_uses"`
}

// runInvite asks the broker for a signed invite to a mesh the user owns
// and prints the short link and code to share, and the token link the
// upstream claudemesh CLI joins with.
func runInvite(c *cli, fs *pflag.FlagSet) runFunc {
	role := fs.String("role", "member", "role of whoever joins: member or admin")
	uses := fs.Int("max-uses", 1, "how many peers may join with this invite (1-1000)")
	asJSON := fs.Bool("json", false, "print {url, join_url, code, expires_at, token, role, max_uses} as JSON")
	return func(pos []string) error {
		if len(pos) > 1 {
			return usagef(commands()["invite"].usage, "invite takes at most one mesh slug")
		}
		if *role != "member" && *role != "admin" {
			return usagef(commands()["invite"].usage, "--role must be member or admin")
		}
		cfg, err := c.loadConfig()
		if err != nil {
			return err
		}
		slug := ""
		if len(pos) == 1 {
			slug = pos[0]
		} else if m, err := c.pick(cfg, ""); err == nil {
			slug = m.Slug
		} else {
			return usagef(commands()["invite"].usage, "which mesh? %v", err)
		}
		base, token, err := c.authed(cfg)
		if err != nil {
			return err
		}
		var out inviteResult
		body := map[string]any{"role": *role, "max_uses": *uses}
		if err := c.call(base, "POST", "/cli/mesh/"+url.PathEscape(slug)+"/invite", token, body, &out); err != nil {
			return fmt.Errorf("invite: %w", err)
		}
		c.rememberRootKey(cfg, out.Token)
		if *asJSON {
			return printJSON(c.stdout, out)
		}
		exp, _ := time.Parse(time.RFC3339, out.ExpiresAt)
		plural := "use"
		if out.MaxUses != 1 {
			plural = "uses"
		}
		if out.JoinURL == "" { // a broker from before join_url: the same link, built here
			out.JoinURL = strings.TrimSuffix(out.URL, "/i/"+out.Code) + "/join/" + out.Token
		}
		fmt.Fprintf(c.stdout, "Invite link: %s\nToken link:  %s\nCode:        %s\nRole:        %s (%d %s)\nExpires:     %s\n\n"+
			"meshctl users run:    meshctl join %s\nclaudemesh users run: claudemesh join %s\n",
			out.URL, out.JoinURL, out.Code, out.Role, out.MaxUses, plural, exp.UTC().Format("2006-01-02 15:04 MST"), out.URL, out.JoinURL)
		return nil
	}
}

// rememberRootKey saves the mesh root key carried by an invite into the
// owner's identity, which mesh create cannot know.
func (c *cli) rememberRootKey(cfg *config, token string) {
	p, err := wire.DecodeInviteToken(token)
	if err != nil {
		return
	}
	if m := cfg.find(p.MeshID); m != nil && m.RootKey == "" {
		m.RootKey = p.MeshRootKey
		if err := c.saveConfig(cfg); err != nil {
			fmt.Fprintf(c.stderr, "meshctl: warning: %v\n", err)
		}
	}
}
