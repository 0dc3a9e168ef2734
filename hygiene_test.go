package meshd

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestNoTrackedBuildOutputs fails when a compiled binary or a large build
// output is committed (a 34 MB meshd binary once was): it would ship in
// every clone and every Docker build context.
func TestNoTrackedBuildOutputs(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("git", "ls-files", "-z").Output()
	if err != nil {
		t.Skipf("not a git checkout (%v)", err)
	}
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			continue // deleted in the work tree
		}
		if bytes.HasPrefix(b, []byte("\x7fELF")) || bytes.HasPrefix(b, []byte("MZ")) {
			t.Errorf("%s is a compiled binary; remove it and ignore it", name)
		}
		if len(b) > 2<<20 {
			t.Errorf("%s is %d bytes; build outputs and data dumps do not belong in git", name, len(b))
		}
	}
}

// TestStandsAlone fails when a tracked file cites the shared documents
// outside the repository; the project's own docs (docs/protocol.md and friends) are the
// references.
func TestStandsAlone(t *testing.T) {
	t.Parallel()
	outside := "../" + "shared" // split so this file does not cite it either
	out, err := exec.Command("git", "grep", "-l", "-F", outside, "--", ".").Output()
	if err != nil {
		return // exit 1: no match
	}
	t.Errorf("files cite %s (outside the repository):\n%s", outside, out)
}
