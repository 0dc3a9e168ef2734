package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/meshd/meshd/client"
)

// sessionKey returns the session keypair of this Claude Code session in
// mesh id: one per (parent process, working directory), kept 0600 in
// <config dir>/sessions so that an MCP server Claude Code restarts is the
// same peer — same session pubkey, so messages addressed to it and still
// unacked are delivered to the new process. Keys of parent processes that
// are gone are removed here.
func (c *cli) sessionKey(id *meshIdentity) (client.Identity, error) {
	dir, err := c.configDir()
	if err != nil {
		return client.Identity{}, err
	}
	dir = filepath.Join(dir, "sessions")
	pruneSessionKeys(dir)
	cwd, _ := os.Getwd()
	sum := sha256.Sum256([]byte(cwd))
	path := filepath.Join(dir, fmt.Sprintf("%s-%d-%s.key", id.Slug, os.Getppid(), hex.EncodeToString(sum[:4])))
	if b, err := os.ReadFile(path); err == nil {
		if k, err := client.IdentityFromSecretHex(strings.TrimSpace(string(b))); err == nil {
			return k, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return client.Identity{}, fmt.Errorf("read session key: %w", err)
	}
	k := client.GenerateIdentity()
	if err := writeSecretFile(path, []byte(k.SecretHex()+"\n")); err != nil {
		return client.Identity{}, err
	}
	return k, nil
}

// pruneSessionKeys removes keys whose parent process no longer exists.
func pruneSessionKeys(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		parts := strings.Split(strings.TrimSuffix(e.Name(), ".key"), "-")
		if len(parts) < 3 || !strings.HasSuffix(e.Name(), ".key") {
			continue
		}
		pid, err := strconv.Atoi(parts[len(parts)-2])
		if err != nil || pid <= 1 {
			continue
		}
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
