package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/meshd/meshd/internal/testpg"
)

// Issue 12 item 7: MESHD_ENV=production refuses to start without
// BROKER_ENCRYPTION_KEY (before touching the database); a malformed key is
// a configuration error; `meshd keys rotate` needs a key and re-seals.
func TestProductionRequiresEncryptionKey(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	runWith := func(args []string, env map[string]string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
		return code, out.String(), errb.String()
	}
	key := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		code    int
		wantOut string
	}{
		{"production_without_key", []string{"serve"}, map[string]string{"DATABASE_URL": dsn, "MESHD_ENV": "production"}, 1, "MESHD_ENV=production requires BROKER_ENCRYPTION_KEY"},
		{"malformed_key", []string{"serve"}, map[string]string{"DATABASE_URL": dsn, "BROKER_ENCRYPTION_KEY": "short"}, 1, "BROKER_ENCRYPTION_KEY must be 64 hex characters"},
		{"rotate_without_key", []string{"keys", "rotate"}, map[string]string{"DATABASE_URL": dsn}, 1, "BROKER_ENCRYPTION_KEY is required"},
		{"rotate_with_key", []string{"keys", "rotate"}, map[string]string{"DATABASE_URL": dsn, "BROKER_ENCRYPTION_KEY": key}, 0, "re-encrypted 0 secrets under key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runWith(tt.args, tt.env)
			if code != tt.code || !strings.Contains(out+errs, tt.wantOut) {
				t.Fatalf("exit %d, out %q, err %q; want %d and %q", code, out, errs, tt.code, tt.wantOut)
			}
		})
	}
}
