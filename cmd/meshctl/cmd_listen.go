package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd"
)

// runListen stays connected (reconnecting with backoff) and prints every
// push as it arrives until interrupted. It also owns the mesh's status:
// --status sets it once connected and `meshctl status set` reaches it
// through a control socket in the config directory.
func runListen(c *cli, fs *pflag.FlagSet) runFunc {
	mesh := fs.String("mesh", "", "mesh slug (default: $MESHCTL_MESH, else your only mesh)")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	status := fs.String("status", "", "set this status once connected: idle, working or dnd")
	return func([]string) error {
		if *status != "" && !meshd.Status(*status).Valid() {
			return usagef(commands()["listen"].usage, "--status must be idle, working or dnd")
		}
		id, s, err := c.connectMesh(*mesh, "listen", true)
		if err != nil {
			return err
		}
		defer s.c.Close()
		if *status != "" {
			if err := s.c.SetStatus(c.ctx, meshd.Status(*status)); err != nil {
				return fmt.Errorf("set status: %w", err)
			}
		}
		stopCtl := c.serveControl(s)
		defer stopCtl()
		fmt.Fprintf(c.stderr, "meshctl: listening on mesh %s as %q (Ctrl-C to stop)\n", id.Slug, id.DisplayName)
		return c.listenLoop(s, *asJSON)
	}
}

// listenLoop prints pushes until the user interrupts (exit 0) or the
// client stops for good (a terminal close: exit 1 with the reason).
func (c *cli) listenLoop(s *session, asJSON bool) error {
	p := newPushPrinter(c.stdout, s.id.Slug, asJSON)
	errs := s.c.Errors()
	for {
		select {
		case <-c.ctx.Done():
			return nil
		case m, ok := <-s.c.Pushes():
			if !ok {
				if err := s.c.Err(); err != nil {
					return fmt.Errorf("disconnected: %w", err)
				}
				return nil
			}
			p.print(m)
		case e, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			fmt.Fprintf(c.stderr, "meshctl: broker error %s: %s\n", e.Code, e.Message)
		}
	}
}
