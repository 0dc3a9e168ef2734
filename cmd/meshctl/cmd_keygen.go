package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/meshd/meshd/client"
)

// runKeygen writes a fresh member keypair (the 128-hex libsodium secret)
// to a 0600 file and prints only the public key and the path; pass the file
// to `mesh create --key` or `join --key`.
func runKeygen(c *cli, fs *pflag.FlagSet) runFunc {
	out := fs.String("out", "", "file to write the secret key to (default: <config dir>/keys/<pubkey prefix>.key)")
	asJSON := fs.Bool("json", false, "print {pubkey, path} as JSON")
	return func([]string) error {
		id := client.GenerateIdentity()
		path := *out
		if path == "" {
			dir, err := c.configDir()
			if err != nil {
				return err
			}
			path = filepath.Join(dir, "keys", id.Pubkey[:16]+".key")
		}
		if err := writeSecretFile(path, []byte(id.SecretHex()+"\n")); err != nil {
			return err
		}
		if *asJSON {
			return printJSON(c.stdout, map[string]string{"pubkey": id.Pubkey, "path": path})
		}
		fmt.Fprintf(c.stdout, "Public key: %s\nSecret key: written to %s (mode 0600; never share it)\n", id.Pubkey, path)
		return nil
	}
}
