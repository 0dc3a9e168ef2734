package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshd/meshd/client"
)

// defaultBroker is used by login when neither --broker nor a saved broker
// is given: a local `make run`.
const defaultBroker = "ws://localhost:7900/ws"

// config is config.json in the config directory. It holds secrets (the
// bearer token and member secret keys), so it is written 0600 in a 0700
// directory and never printed.
type config struct {
	Broker string         `json:"broker,omitempty"` // WebSocket URL of the broker logged in to
	Token  string         `json:"token,omitempty"`  // bearer token for /cli/* routes
	Meshes []meshIdentity `json:"meshes"`
}

// meshIdentity is one mesh membership, as the claudemesh CLI stores it
// after a join (B.9.5): enough to send hello.
type meshIdentity struct {
	MeshID      string `json:"meshId"`
	MemberID    string `json:"memberId"`
	Slug        string `json:"slug"`
	Name        string `json:"name,omitempty"`
	Pubkey      string `json:"pubkey"`
	SecretKey   string `json:"secretKey"` // 128 hex, libsodium layout
	BrokerURL   string `json:"brokerUrl"`
	RootKey     string `json:"rootKey,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
	Role        string `json:"role,omitempty"`
}

// identity decodes the member keypair.
func (m *meshIdentity) identity() (client.Identity, error) {
	id, err := client.IdentityFromSecretHex(m.SecretKey)
	if err != nil {
		return id, fmt.Errorf("saved key for mesh %s is unusable: %w", m.Slug, err)
	}
	return id, nil
}

// configDir is $MESHCTL_CONFIG_DIR, else ~/.config/meshctl.
func (c *cli) configDir() (string, error) {
	if d := c.getenv("MESHCTL_CONFIG_DIR"); d != "" {
		return d, nil
	}
	home := c.getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", errors.New("cannot find a config directory: set MESHCTL_CONFIG_DIR")
		}
	}
	return filepath.Join(home, ".config", "meshctl"), nil
}

// loadConfig reads config.json; a missing file is an empty config.
func (c *cli) loadConfig() (*config, error) {
	dir, err := c.configDir()
	if err != nil {
		return nil, err
	}
	cfg := &config{}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := json.Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("config %s is corrupt: %w", filepath.Join(dir, "config.json"), err)
	}
	return cfg, nil
}

// saveConfig writes config.json atomically with mode 0600.
func (c *cli) saveConfig(cfg *config) error {
	dir, err := c.configDir()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return writeSecretFile(filepath.Join(dir, "config.json"), append(b, '\n'))
}

// writeSecretFile writes data to path atomically with mode 0600 in a
// 0700 directory.
func writeSecretFile(path string, data []byte) error {
	return writeFileAtomic(path, data, 0o600, 0o700)
}

// writeFileAtomic writes data to path via a temporary file and rename, so
// a crash never leaves a half-written file.
func writeFileAtomic(path string, data []byte, mode, dirMode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// find returns the saved identity whose slug or mesh id is ref.
func (cfg *config) find(ref string) *meshIdentity {
	for i := range cfg.Meshes {
		if cfg.Meshes[i].Slug == ref || cfg.Meshes[i].MeshID == ref {
			return &cfg.Meshes[i]
		}
	}
	return nil
}

// put saves id, replacing an identity for the same mesh.
func (cfg *config) put(id meshIdentity) {
	for i := range cfg.Meshes {
		if cfg.Meshes[i].MeshID == id.MeshID {
			cfg.Meshes[i] = id
			return
		}
	}
	cfg.Meshes = append(cfg.Meshes, id)
}

// remove forgets the identity of meshID.
func (cfg *config) remove(meshID string) {
	out := cfg.Meshes[:0]
	for _, m := range cfg.Meshes {
		if m.MeshID != meshID {
			out = append(out, m)
		}
	}
	cfg.Meshes = out
}

// pick chooses the mesh a command acts on: --mesh, else $MESHCTL_MESH,
// else the only one saved.
func (c *cli) pick(cfg *config, ref string) (*meshIdentity, error) {
	if ref == "" {
		ref = c.getenv("MESHCTL_MESH")
	}
	slugs := make([]string, len(cfg.Meshes))
	for i, m := range cfg.Meshes {
		slugs[i] = m.Slug
	}
	switch {
	case ref != "":
		if m := cfg.find(ref); m != nil {
			return m, nil
		}
		if len(slugs) == 0 {
			return nil, fmt.Errorf("no identity saved for mesh %q: join it or create it first", ref)
		}
		return nil, fmt.Errorf("no identity saved for mesh %q (you have: %s)", ref, strings.Join(slugs, ", "))
	case len(cfg.Meshes) == 1:
		return &cfg.Meshes[0], nil
	case len(cfg.Meshes) == 0:
		return nil, errors.New("you are in no mesh yet: run `meshctl join <link>` or `meshctl mesh create <name>`")
	}
	return nil, fmt.Errorf("you are in several meshes (%s): pass --mesh <slug>", strings.Join(slugs, ", "))
}

// pickMesh loads the config and picks the mesh a command acts on.
func (c *cli) pickMesh(ref string) (*meshIdentity, error) {
	cfg, err := c.loadConfig()
	if err != nil {
		return nil, err
	}
	return c.pick(cfg, ref)
}

// readKeyFile loads a key written by `meshctl keygen`.
func readKeyFile(path string) (client.Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return client.Identity{}, fmt.Errorf("read key: %w", err)
	}
	id, err := client.IdentityFromSecretHex(strings.TrimSpace(string(b)))
	if err != nil {
		return id, fmt.Errorf("key file %s: %w", path, err)
	}
	return id, nil
}
