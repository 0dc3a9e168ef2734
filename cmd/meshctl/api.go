package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// httpTimeout bounds every HTTP call so a dead broker fails the command
// instead of hanging it.
const httpTimeout = 15 * time.Second

// maxResponse caps what meshctl reads of a response body.
const maxResponse = 1 << 20

// httpBase turns the broker's WebSocket URL into the base of its HTTP
// routes, as the claudemesh CLI does (B.9.6): ws→http, wss→https, the
// trailing /ws removed.
func httpBase(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("broker URL %q is not a ws:// or wss:// URL", wsURL)
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("broker URL %q is not a ws:// or wss:// URL", wsURL)
	}
	u.Path = strings.TrimSuffix(strings.TrimRight(u.Path, "/"), "/ws")
	u.RawQuery, u.Fragment = "", ""
	return strings.TrimRight(u.String(), "/"), nil
}

// apiError is a non-2xx answer from the broker.
type apiError struct {
	Status int
	Code   string // the JSON error field, or the status text
	Reason string // the JSON reason field, when given
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("broker answered %d %s", e.Status, e.Code)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	switch e.Code {
	case "missing_bearer_token":
		msg += ": not logged in — run `meshctl login --token <token>`"
	case "invalid_or_revoked_token", "empty_bearer_token":
		msg += ": the saved token is not valid — get a new one with `meshd token create` and run `meshctl login`"
	}
	return msg
}

// call sends method base+path with an optional bearer token and JSON body,
// and decodes a 2xx JSON answer into out (nil skips).
func (c *cli) call(base, method, path, token string, in, out any) error {
	ctx, cancel := context.WithTimeout(c.ctx, httpTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, base+path, unwrapURLError(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, base+path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error, Reason string }
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = strings.ToLower(http.StatusText(resp.StatusCode))
		}
		return &apiError{Status: resp.StatusCode, Code: e.Error, Reason: e.Reason}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: unexpected answer: %w", method, base+path, err)
		}
	}
	return nil
}

// unwrapURLError drops net/url's "Get \"…\":" prefix; the caller names the
// request already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// loggedIn loads the config and returns it with the HTTP base and token of
// the logged-in broker.
func (c *cli) loggedIn() (*config, string, string, error) {
	cfg, err := c.loadConfig()
	if err != nil {
		return nil, "", "", err
	}
	base, token, err := c.authed(cfg)
	return cfg, base, token, err
}

// authed returns the HTTP base and token of the logged-in broker.
func (c *cli) authed(cfg *config) (string, string, error) {
	if cfg.Token == "" || cfg.Broker == "" {
		return "", "", errors.New("not logged in: run `meshctl login --token <token> --broker <ws url>` (the operator creates tokens with `meshd token create --user <you>`)")
	}
	base, err := httpBase(cfg.Broker)
	return base, cfg.Token, err
}
