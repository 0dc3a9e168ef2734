// Package opstools finds the real tools the deployment tests run (helm, kustomize,
// promtool, docker-compose, composecheck), which scripts/ops-tools.sh
// installs into bin/tools. A test whose tool is missing skips, naming the
// tool and how to install it; a tool that rejects a file fails the test.
package opstools

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir is where scripts/ops-tools.sh puts the tools: $OPS_TOOLS_DIR, else
// bin/tools at the repository root.
func Dir() string {
	if d := os.Getenv("OPS_TOOLS_DIR"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", "tools")
}

// Find returns the path of tool from Dir or else $PATH, or skips t.
func Find(t testing.TB, tool string) string {
	t.Helper()
	if p := filepath.Join(Dir(), tool); isExec(p) {
		return p
	}
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	t.Skipf("%s is not installed (run scripts/ops-tools.sh, which `make test` runs, to install it)", tool)
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Run runs tool with args in dir and fails t with its output when it exits
// non-zero; it returns the combined output.
func Run(t testing.TB, dir, tool string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(tool), args, err, out)
	}
	return string(out)
}
