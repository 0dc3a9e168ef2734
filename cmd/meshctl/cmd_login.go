package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// runLogin saves a bearer token after checking it against the broker.
// --token - reads it from stdin so it stays out of shell history.
func runLogin(c *cli, fs *pflag.FlagSet) runFunc {
	token := fs.String("token", "", "bearer token from `meshd token create --user <you>` (- reads stdin)")
	broker := fs.String("broker", "", "broker WebSocket URL, e.g. wss://mesh.example.com/ws (default: the saved one, else "+defaultBroker+")")
	return func([]string) error {
		if *token == "-" {
			line, err := bufio.NewReader(c.stdin).ReadString('\n')
			if err != nil && line == "" {
				return errors.New("login: no token on stdin")
			}
			*token = line
		}
		*token = strings.TrimSpace(*token)
		if *token == "" {
			return usagef(commands()["login"].usage, "login: --token is required")
		}
		cfg, err := c.loadConfig()
		if err != nil {
			return err
		}
		url := *broker
		if url == "" {
			url = cfg.Broker
		}
		if url == "" {
			url = defaultBroker
		}
		base, err := httpBase(url)
		if err != nil {
			return err
		}
		if err := c.call(base, "GET", "/cli/meshes", *token, nil, nil); err != nil {
			return fmt.Errorf("login: %w", err)
		}
		cfg.Broker, cfg.Token = url, *token
		if err := c.saveConfig(cfg); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "Logged in to %s. The token is saved in the config directory (mode 0600).\n", url)
		return nil
	}
}

// runLogout revokes the saved token on the broker and forgets it.
func runLogout(c *cli, fs *pflag.FlagSet) runFunc {
	return func([]string) error {
		cfg, base, token, err := c.loggedIn()
		if err != nil {
			return err
		}
		var out struct{ Found bool }
		if err := c.call(base, "POST", "/cli/session/revoke", "", map[string]string{"token": token}, &out); err != nil {
			return fmt.Errorf("logout: %w", err)
		}
		cfg.Token = ""
		if err := c.saveConfig(cfg); err != nil {
			return err
		}
		fmt.Fprintln(c.stdout, "Logged out; the token is revoked.")
		return nil
	}
}
