package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd"
)

// Status lives on a presence, that is on a live connection (B.6): a
// one-shot connection's status would vanish with it. So `meshctl listen`
// serves a small control socket, <config dir>/listen-<slug>.sock (mode
// 0600), and `meshctl status set` asks it to send set_status on its
// connection.

// controlTimeout bounds one control request.
const controlTimeout = 5 * time.Second

type controlRequest struct {
	Status string `json:"status"`
}

type controlReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func (c *cli) controlPath(slug string) (string, error) {
	dir, err := c.configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "listen-"+slug+".sock"), nil
}

// serveControl listens on the control socket until the returned stop is
// called. Failing to listen (another listen owns it, or the path is too
// long for a Unix socket) only costs `status set`, so it warns.
func (c *cli) serveControl(s *session) (stop func()) {
	path, err := c.controlPath(s.id.Slug)
	if err == nil {
		if conn, derr := net.DialTimeout("unix", path, time.Second); derr == nil {
			conn.Close()
			err = errors.New("another `meshctl listen` owns it")
		} else {
			_ = os.Remove(path) // stale socket of a listen that died
		}
	}
	var ln net.Listener
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			ln, err = net.Listen("unix", path)
		}
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "meshctl: warning: no status control socket (%v); `meshctl status set` will not reach this listen\n", err)
		return func() {}
	}
	_ = os.Chmod(path, 0o600)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.handleControl(s, conn)
		}
	}()
	return func() {
		ln.Close()
		<-done
		_ = os.Remove(path)
	}
}

// handleControl answers one request on conn.
func (c *cli) handleControl(s *session, conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(controlTimeout))
	var req controlRequest
	reply := controlReply{OK: true}
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		reply = controlReply{Error: "bad request: " + err.Error()}
	} else if !meshd.Status(req.Status).Valid() {
		reply = controlReply{Error: "status must be idle, working or dnd"}
	} else {
		ctx, cancel := context.WithTimeout(c.ctx, controlTimeout)
		err := s.c.SetStatus(ctx, meshd.Status(req.Status))
		if err == nil {
			// set_status has no reply; the broker handles a socket's
			// frames in order, so an answered request after it means it
			// is applied when status set returns.
			_, err = s.c.ListPeers(ctx)
		}
		cancel()
		if err != nil {
			reply = controlReply{Error: err.Error()}
		}
	}
	_ = json.NewEncoder(conn).Encode(reply)
}

// runStatusSet asks the running `meshctl listen` of a mesh to set its
// status.
func runStatusSet(c *cli, fs *pflag.FlagSet) runFunc {
	mesh := fs.String("mesh", "", "mesh slug (default: $MESHCTL_MESH, else your only mesh)")
	return func(pos []string) error {
		if !meshd.Status(pos[0]).Valid() {
			return usagef(commands()["status set"].usage, "status must be idle, working or dnd")
		}
		id, err := c.pickMesh(*mesh)
		if err != nil {
			return err
		}
		path, err := c.controlPath(id.Slug)
		if err != nil {
			return err
		}
		conn, err := net.DialTimeout("unix", path, controlTimeout)
		if err != nil {
			return fmt.Errorf("no `meshctl listen` is running for mesh %s; status belongs to a live connection: start `meshctl listen --mesh %s --status %s`", id.Slug, id.Slug, pos[0])
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(controlTimeout))
		if err := json.NewEncoder(conn).Encode(controlRequest{Status: pos[0]}); err != nil {
			return fmt.Errorf("status set: %w", err)
		}
		var reply controlReply
		if err := json.NewDecoder(conn).Decode(&reply); err != nil {
			return fmt.Errorf("status set: no answer from meshctl listen: %w", err)
		}
		if !reply.OK {
			return fmt.Errorf("status set: %s", reply.Error)
		}
		fmt.Fprintf(c.stdout, "Status of your listen on mesh %s is now %s.\n", id.Slug, pos[0])
		return nil
	}
}
