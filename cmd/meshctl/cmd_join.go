package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd/client"
	"github.com/meshd/meshd/wire"
)

// runJoin joins a mesh with an invite link, short code or token, as the
// claudemesh CLI does (B.9.5): resolve, verify the owner's signature and
// the expiry locally, generate a member key (or reuse the saved one for
// this mesh, so joining twice is harmless), POST /join to the invite's
// broker and save the identity.
func runJoin(c *cli, fs *pflag.FlagSet) runFunc {
	name := fs.String("name", "", "your display name in the mesh (default: $USER)")
	broker := fs.String("broker", "", "broker WebSocket URL to use instead of the one in the invite (also resolves bare codes)")
	keyFile := fs.String("key", "", "use the member key in this file (from `meshctl keygen`)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	return func(pos []string) error {
		cfg, err := c.loadConfig()
		if err != nil {
			return err
		}
		p, token, err := c.resolveInvite(cfg, pos[0], *broker)
		if err != nil {
			return fmt.Errorf("join: %w", err)
		}
		brokerURL := p.BrokerURL
		if *broker != "" {
			brokerURL = *broker
		}
		id, err := c.joinKey(cfg, p.MeshID, *keyFile)
		if err != nil {
			return err
		}
		display := c.displayName(*name)
		memberID, already, err := c.postJoin(brokerURL, token, p, id.Pubkey, display)
		if err != nil {
			return fmt.Errorf("join: %w", err)
		}
		cfg.put(meshIdentity{MeshID: p.MeshID, MemberID: memberID, Slug: p.MeshSlug, Pubkey: id.Pubkey, SecretKey: id.SecretHex(),
			BrokerURL: brokerURL, RootKey: p.MeshRootKey, DisplayName: display, Role: p.Role})
		if err := c.saveConfig(cfg); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, map[string]any{"meshId": p.MeshID, "memberId": memberID, "slug": p.MeshSlug,
				"pubkey": id.Pubkey, "brokerUrl": brokerURL, "role": p.Role, "alreadyMember": already})
		}
		verb := "Joined"
		if already {
			verb = "Already a member of"
		}
		fmt.Fprintf(c.stdout, "%s mesh %s as %q (role %s, member id %s).\nNext: meshctl listen --mesh %s\n",
			verb, p.MeshSlug, display, p.Role, memberID, p.MeshSlug)
		return nil
	}
}

// resolveInvite turns a link, code or token into a verified payload and its
// token. Codes are resolved by the link's host (/api/public/invite-code/,
// which meshd and the upstream web app both serve) or, for a bare code, by
// the broker's /i/<code>.
func (c *cli) resolveInvite(cfg *config, arg, brokerFlag string) (*wire.InvitePayload, string, error) {
	token, code, err := wire.ParseInviteLink(arg)
	if err != nil {
		return nil, "", err
	}
	var p *wire.InvitePayload
	if token != "" {
		if p, err = wire.DecodeInviteToken(token); err != nil {
			if !looksLikeCode(arg) {
				return nil, "", err
			}
			token, code = "", strings.ToUpper(strings.TrimSpace(arg))
		}
	}
	if code != "" {
		if token, err = c.lookupCode(cfg, arg, code, brokerFlag); err != nil {
			return nil, "", err
		}
		if p, err = wire.DecodeInviteToken(token); err != nil {
			return nil, "", err
		}
	}
	if !wire.VerifyInvite(p) {
		return nil, "", errors.New("the invite's signature is invalid (tampered or not from the mesh owner)")
	}
	if exp := time.Unix(p.ExpiresAt, 0); time.Now().After(exp) {
		return nil, "", fmt.Errorf("the invite expired at %s", exp.UTC().Format(time.RFC3339))
	}
	return p, token, nil
}

// looksLikeCode reports whether s is an 8-character short code.
func looksLikeCode(s string) bool {
	s = strings.ToUpper(strings.TrimSpace(s))
	return len(s) == 8 && strings.Trim(s, "ABCDEFGHJKLMNPQRSTUVWXYZ23456789") == ""
}

// lookupCode resolves a short code to its token.
func (c *cli) lookupCode(cfg *config, arg, code, brokerFlag string) (string, error) {
	var base, path string
	if u, err := url.Parse(strings.TrimSpace(arg)); err == nil && u.Host != "" {
		base, path = u.Scheme+"://"+u.Host, "/api/public/invite-code/"+code
	} else {
		ws := brokerFlag
		if ws == "" {
			ws = cfg.Broker
		}
		if ws == "" {
			return "", errors.New("a bare invite code needs a broker: pass --broker <ws url> or log in first")
		}
		if base, err = httpBase(ws); err != nil {
			return "", err
		}
		path = "/i/" + code
	}
	var out struct {
		Found bool
		Token string
	}
	if err := c.call(base, "GET", path, "", nil, &out); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == 404 {
			return "", fmt.Errorf("invite code %s is unknown to %s", code, base)
		}
		return "", err
	}
	if !out.Found || out.Token == "" {
		return "", fmt.Errorf("invite code %s is unknown to %s", code, base)
	}
	return out.Token, nil
}

// joinKey is the member key for meshID: --key, else the saved one (a
// repeated join keeps the membership), else a new one.
func (c *cli) joinKey(cfg *config, meshID, keyFile string) (client.Identity, error) {
	if keyFile != "" {
		return readKeyFile(keyFile)
	}
	if m := cfg.find(meshID); m != nil {
		return m.identity()
	}
	return client.GenerateIdentity(), nil
}

// displayName is --name, else $USER, else the host name.
func (c *cli) displayName(flag string) string {
	for _, n := range []string{flag, c.getenv("USER")} {
		if n = strings.TrimSpace(n); n != "" {
			return n
		}
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "peer"
}

// postJoin is POST /join on the host of the invite's broker URL (B.9.6).
func (c *cli) postJoin(brokerURL, token string, p *wire.InvitePayload, pubkey, name string) (string, bool, error) {
	base, err := httpBase(brokerURL)
	if err != nil {
		return "", false, err
	}
	u, _ := url.Parse(base)
	base = u.Scheme + "://" + u.Host
	var out struct {
		MemberID      string `json:"memberId"`
		AlreadyMember bool   `json:"alreadyMember"`
	}
	body := map[string]any{"invite_token": token, "invite_payload": p, "peer_pubkey": pubkey, "display_name": name}
	if err := c.call(base, "POST", "/join", "", body, &out); err != nil {
		return "", false, err
	}
	return out.MemberID, out.AlreadyMember, nil
}
