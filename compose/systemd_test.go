package compose_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/meshd/meshd/internal/opstools"
)

const unitFile = "systemd/meshd.service"

// maxExposure is the highest `systemd-analyze security` exposure score
// (0 = locked down, 10 = unprotected) the unit may have.
const maxExposure = 2.0

// unitForVerify copies the unit with ExecStart pointing at an executable
// that exists here (systemd-analyze verify checks it).
func unitForVerify(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(raw), "ExecStart=/usr/local/bin/meshd ", "ExecStart="+exe+" ", 1)
	if text == string(raw) {
		t.Fatal("ExecStart is not /usr/local/bin/meshd serve")
	}
	p := filepath.Join(t.TempDir(), "meshd.service")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The real systemd-analyze accepts the unit without a warning, and its
// hardening scores as locked down.
func TestSystemdUnit(t *testing.T) {
	sa := opstools.Find(t, "systemd-analyze")
	unit := unitForVerify(t)
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "meshd.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	sec, err := exec.Command(sa, "security", "--offline=yes", unit).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for meshd.service: ([0-9.]+)`).FindSubmatch(sec)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, sec)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	if score > maxExposure {
		t.Errorf("exposure %.1f > %.1f:\n%s", score, maxExposure, sec)
	}
}

// The unit drains like the other deployments, and the example environment
// sets only documented variables.
func TestSystemdUnitSettings(t *testing.T) {
	raw, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
	}
	for k, want := range map[string]string{"KillSignal": "SIGTERM", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "DynamicUser": "yes", "EnvironmentFile": "/etc/meshd/meshd.env"} {
		if settings[k] != want {
			t.Errorf("%s=%q, want %q", k, settings[k], want)
		}
	}
	if d, err := strconv.Atoi(strings.TrimSuffix(settings["TimeoutStopSec"], "s")); err != nil || d < 30 {
		t.Errorf("TimeoutStopSec=%q: want ≥ 30s for the drain", settings["TimeoutStopSec"])
	}
	f, err := os.Open("systemd/meshd.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, _, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			names = append(names, k)
		}
	}
	checkEnvDocumented(t, "meshd.env.example", names)
	if len(names) < 3 {
		t.Errorf("meshd.env.example sets only %v", names)
	}
}
