package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/meshd/meshd"
	"github.com/meshd/meshd/client"
)

// dialTimeout bounds connecting and the hello handshake.
const dialTimeout = 15 * time.Second

// session is a live connection to one mesh.
type session struct {
	id   *meshIdentity
	c    *client.Client
	sid  string // our presence's sessionId, to tell ourselves apart in peers_list
	self string // our routing pubkey
}

// connectMesh picks the mesh for --mesh ref (pickMesh) and connects to it.
func (c *cli) connectMesh(ref, purpose string, reconnect bool) (*meshIdentity, *session, error) {
	id, err := c.pickMesh(ref)
	if err != nil {
		return nil, nil, err
	}
	s, err := c.connect(id, purpose, reconnect)
	return id, s, err
}

// connect opens a member-key connection for id (hello, B.2). Pushes are
// client_acked as they are taken (at-least-once, A.3-4), so whatever a
// one-shot command receives it must show.
func (c *cli) connect(id *meshIdentity, purpose string, reconnect bool) (*session, error) {
	key, err := id.identity()
	if err != nil {
		return nil, err
	}
	// A stable session id per (key, purpose): a closed connection's
	// presence waits 90 s in its grace lease (B.2), and the next command's
	// hello reattaches it instead of piling up copies in peer lists. Two
	// concurrent commands of one purpose replace each other (B.2 step 5).
	// One-shot commands (purpose "cli") connect as ephemeral peers instead
	// (A.3-32): nobody sees them and their presence ends with the socket,
	// so each gets its own session id and concurrent ones do not collide.
	sid := fmt.Sprintf("meshctl-%s-%s", purpose, key.Pubkey[:12])
	ephemeral := purpose == "cli"
	if ephemeral {
		rnd := meshd.NewID()
		sid = fmt.Sprintf("meshctl-cli-%s-%s", key.Pubkey[:12], rnd[len(rnd)-10:])
	}
	ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
	defer cancel()
	cl, err := client.Dial(ctx, client.Config{
		URL: id.BrokerURL, MeshID: id.MeshID, MemberID: id.MemberID, Member: key,
		DisplayName: id.DisplayName, SessionID: sid, Channel: "meshctl",
		AckPushes: true, Ephemeral: ephemeral, Reconnect: reconnect, OnEvent: connectionLog(c.stderr, "meshctl"),
	})
	if err != nil {
		var rej *client.RejectedError
		if errors.As(err, &rej) {
			return nil, fmt.Errorf("the broker at %s refused mesh %s: %w", id.BrokerURL, id.Slug, err)
		}
		return nil, fmt.Errorf("connect to %s: %w", id.BrokerURL, err)
	}
	return &session{id: id, c: cl, sid: sid, self: key.Pubkey}, nil
}

// closeCollect closes a one-shot connection and returns the messages it
// took meanwhile (system events aside): they were acknowledged to the
// broker, so the command must show them.
func (c *cli) closeCollect(s *session) []client.Message {
	_ = s.c.Close()
	var got []client.Message
	for m := range s.c.Pushes() {
		if !m.System() {
			got = append(got, m)
		}
	}
	return got
}

// showReceived prints messages a one-shot command took, for humans.
func (c *cli) showReceived(slug string, got []client.Message) {
	if len(got) == 0 {
		return
	}
	fmt.Fprintln(c.stdout, "Received while connected:")
	p := newPushPrinter(c.stdout, slug, false)
	for _, m := range got {
		p.print(m)
	}
}

// receivedLines is the --json form of messages a one-shot command took.
func receivedLines(slug string, got []client.Message) []pushLine {
	out := []pushLine{}
	for _, m := range got {
		out = append(out, messageLine(slug, m))
	}
	return out
}

// connectionLog reports on w when a long-lived connection loses the broker
// and when it is back, with how long it was away (stdout stays for data).
func connectionLog(w io.Writer, prefix string) func(client.Event) {
	var lost time.Time // only the client's supervisor goroutine calls this
	return func(ev client.Event) {
		switch ev.Kind {
		case client.EventDisconnected:
			lost = time.Now()
			fmt.Fprintf(w, "%s: lost the broker (%v); reconnecting\n", prefix, ev.Err)
		case client.EventConnected:
			if !lost.IsZero() {
				fmt.Fprintf(w, "%s: back on the broker after %s\n", prefix, time.Since(lost).Round(100*time.Millisecond))
				lost = time.Time{}
			}
		case client.EventTerminal:
			fmt.Fprintf(w, "%s: the broker ended this connection: %v\n", prefix, ev.Err)
		}
	}
}
