// Command meshctl is the human interface to a claudemesh-compatible broker:
// log in with an operator-issued token, create meshes, invite and join
// peers, send and receive end-to-end encrypted messages. It speaks only the
// broker's public HTTP routes and WebSocket protocol (through the client
// package), never the database. See docs/cli.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version and gitSHA are set with -ldflags -X by the Makefile.
var (
	version = "dev"
	gitSHA  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}
