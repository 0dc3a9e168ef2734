// Package compose_test validates the deployment files statically (no Docker
// engine or cluster runs here): the Dockerfile, docker-compose.ha-local.yml
// with its Prometheus and Grafana provisioning, and the Kubernetes manifests
// (kubernetes_test.go). Every environment variable they set on meshd must be
// one docs/env-vars.md documents.
package compose_test

import (
	"bytes"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/meshd/meshd/internal/opstools"
)

const composeFile = "docker-compose.ha-local.yml"

// meshdPort is meshd's default BROKER_PORT.
const meshdPort = "7900"

// documentedEnv returns the variables of the "meshd serve" table of
// docs/env-vars.md: the ones a deployment may set on meshd.
func documentedEnv(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("../docs/env-vars.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "## meshd serve")
	if start < 0 {
		t.Fatal(`docs/env-vars.md has no "## meshd serve" section`)
	}
	section := doc[start+len("## meshd serve"):]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\|\\s*`([A-Z][A-Z0-9_]*)`\\s*\\|").FindAllStringSubmatch(section, -1) {
		out[m[1]] = true
	}
	if !out["DATABASE_URL"] || !out["NATS_URL"] || !out["MESHD_NODE_ID"] {
		t.Fatalf("env table not parsed: %v", out)
	}
	return out
}

func checkEnvDocumented(t *testing.T, where string, names []string) {
	t.Helper()
	doc := documentedEnv(t)
	for _, n := range names {
		if !doc[n] {
			t.Errorf("%s sets %s, which meshd does not read (not in docs/env-vars.md)", where, n)
		}
	}
}

// decodeStrict decodes YAML rejecting fields the target does not declare.
func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// The subset of the Compose specification this file uses; anything else
// (a misspelt key) fails the strict decode.
type composeSpec struct {
	Services   map[string]composeService `yaml:"services"`
	Volumes    map[string]any            `yaml:"volumes"`
	Extensions map[string]any            `yaml:",inline"` // x-… anchors
}

type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string            `yaml:"context"`
		Dockerfile string            `yaml:"dockerfile"`
		Args       map[string]string `yaml:"args"`
	} `yaml:"build"`
	Command         []string          `yaml:"command"`
	Environment     map[string]string `yaml:"environment"`
	Labels          map[string]string `yaml:"labels"`
	Ports           []string          `yaml:"ports"`
	Volumes         []string          `yaml:"volumes"`
	Restart         string            `yaml:"restart"`
	ReadOnly        bool              `yaml:"read_only"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	DependsOn       map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test        []string `yaml:"test"`
		Interval    string   `yaml:"interval"`
		Timeout     string   `yaml:"timeout"`
		Retries     int      `yaml:"retries"`
		StartPeriod string   `yaml:"start_period"`
	} `yaml:"healthcheck"`
}

func loadCompose(t *testing.T) composeSpec {
	t.Helper()
	var c composeSpec
	decodeStrict(t, composeFile, &c)
	for k := range c.Extensions {
		if !strings.HasPrefix(k, "x-") {
			t.Errorf("unknown top-level key %q", k)
		}
	}
	return c
}

// meshdServices are the services built from compose/Dockerfile.
func meshdServices(t *testing.T, c composeSpec) []string {
	t.Helper()
	var out []string
	for name, s := range c.Services {
		if s.Build != nil && s.Build.Dockerfile == "compose/Dockerfile" {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	if len(out) != 2 {
		t.Fatalf("meshd replicas %v, want 2", out)
	}
	return out
}

func TestComposeServices(t *testing.T) {
	c := loadCompose(t)
	meshds := meshdServices(t, c)
	for _, name := range []string{"postgres", "nats", "traefik", "prometheus", "grafana"} {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("service %s missing", name)
		}
	}
	if img := c.Services["postgres"].Image; !strings.HasPrefix(img, "postgres:15") {
		t.Errorf("postgres image %q, want postgres:15", img)
	}
	for _, name := range meshds {
		s := c.Services[name]
		if s.Build.Context != ".." {
			t.Errorf("%s: build context %q, want the repository root", name, s.Build.Context)
		}
		if got := s.Build.Args["GIT_SHA"]; !strings.HasPrefix(got, "${GIT_SHA") {
			t.Errorf("%s: build arg GIT_SHA %q: want it from the environment (${GIT_SHA:-unknown}) so /health reports the commit", name, got)
		}
		if s.StopGracePeriod == "" {
			t.Errorf("%s: no stop_grace_period for the drain", name)
		}
	}
}

func TestComposeHealthchecks(t *testing.T) {
	c := loadCompose(t)
	wantProbe := map[string]string{
		"postgres":   "pg_isready",
		"nats":       "http://127.0.0.1:8222/healthz",
		"traefik":    "--ping",
		"prometheus": "http://127.0.0.1:9090/-/healthy",
		"grafana":    "http://127.0.0.1:3000/api/health",
	}
	for _, name := range meshdServices(t, c) {
		wantProbe[name] = "http://127.0.0.1:" + meshdPort + "/health"
	}
	for name, s := range c.Services {
		h := s.Healthcheck
		if h == nil || len(h.Test) < 2 || (h.Test[0] != "CMD" && h.Test[0] != "CMD-SHELL") || h.Interval == "" || h.Retries < 1 {
			t.Errorf("%s: missing or incomplete healthcheck %+v", name, h)
			continue
		}
		if want := wantProbe[name]; !slices.Contains(h.Test, want) {
			t.Errorf("%s: healthcheck %v does not probe %q", name, h.Test, want)
		}
	}
}

func TestComposeDependsOn(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		for dep, d := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
			}
			switch d.Condition {
			case "service_started", "service_healthy", "service_completed_successfully":
			default:
				t.Errorf("%s → %s: condition %q", name, dep, d.Condition)
			}
		}
	}
	want := map[string][]string{"traefik": nil, "grafana": {"prometheus"}}
	for _, m := range meshdServices(t, c) {
		want[m] = []string{"postgres", "nats"}
		want["traefik"] = append(want["traefik"], m)
	}
	for svc, deps := range want {
		for _, dep := range deps {
			if got := c.Services[svc].DependsOn[dep].Condition; got != "service_healthy" {
				t.Errorf("%s must wait for %s to be healthy (condition %q)", svc, dep, got)
			}
		}
	}
	// no cycles
	state := map[string]int{}
	var visit func(string) bool
	visit = func(n string) bool {
		switch state[n] {
		case 1:
			return false
		case 2:
			return true
		}
		state[n] = 1
		for dep := range c.Services[n].DependsOn {
			if !visit(dep) {
				t.Errorf("depends_on cycle through %s", n)
				return false
			}
		}
		state[n] = 2
		return true
	}
	for n := range c.Services {
		visit(n)
	}
}

func TestComposeMeshdEnv(t *testing.T) {
	c := loadCompose(t)
	meshds := meshdServices(t, c)
	ids := map[string]bool{}
	first := c.Services[meshds[0]].Environment
	for _, name := range meshds {
		env := c.Services[name].Environment
		checkEnvDocumented(t, name, sortedKeys(env))
		id := env["MESHD_NODE_ID"]
		if id == "" || ids[id] {
			t.Errorf("%s: MESHD_NODE_ID %q must be set and distinct", name, id)
		}
		ids[id] = true
		for _, shared := range []string{"DATABASE_URL", "NATS_URL", "NATS_SUBJECT_PREFIX"} {
			if env[shared] == "" || env[shared] != first[shared] {
				t.Errorf("%s: %s %q must be set and equal on every replica", name, shared, env[shared])
			}
		}
		if p := env["BROKER_PORT"]; p != "" && p != meshdPort {
			t.Errorf("%s: BROKER_PORT %s, but Traefik, Prometheus and the healthcheck use %s", name, p, meshdPort)
		}
	}
	db, err := url.Parse(first["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	pg := c.Services["postgres"].Environment
	pw, _ := db.User.Password()
	if db.Hostname() != "postgres" || db.User.Username() != pg["POSTGRES_USER"] || pw != pg["POSTGRES_PASSWORD"] || strings.TrimPrefix(db.Path, "/") != pg["POSTGRES_DB"] {
		t.Errorf("DATABASE_URL %s does not match the postgres service %v", first["DATABASE_URL"], pg)
	}
	if n, err := url.Parse(first["NATS_URL"]); err != nil || n.Hostname() != "nats" || n.Port() != "4222" {
		t.Errorf("NATS_URL %q must point at the nats service", first["NATS_URL"])
	}
}

func TestComposeTraefikRoutesToMeshd(t *testing.T) {
	c := loadCompose(t)
	meshds := meshdServices(t, c)
	tr := c.Services["traefik"]
	entrypoints := map[string]bool{}
	for _, arg := range tr.Command {
		if m := regexp.MustCompile(`^--entrypoints\.(\w+)\.address=:(\d+)$`).FindStringSubmatch(arg); m != nil {
			entrypoints[m[1]] = true
			if !slices.ContainsFunc(tr.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+m[2]) }) {
				t.Errorf("entrypoint %s (:%s) is not published", m[1], m[2])
			}
		}
	}
	if !slices.Contains(tr.Command, "--providers.docker.exposedbydefault=false") {
		t.Error("traefik must expose only labelled containers")
	}
	labels := c.Services[meshds[0]].Labels
	for _, name := range meshds[1:] {
		if !mapsEqual(labels, c.Services[name].Labels) {
			t.Errorf("%s: Traefik labels differ from %s's, so Traefik would not merge them into one service", name, meshds[0])
		}
	}
	if labels["traefik.enable"] != "true" {
		t.Fatal("traefik.enable is not true on meshd")
	}
	services := map[string]bool{}
	routers := map[string]map[string]string{}
	for k, v := range labels {
		if m := regexp.MustCompile(`^traefik\.http\.services\.([\w-]+)\.`).FindStringSubmatch(k); m != nil {
			services[m[1]] = true
		}
		if m := regexp.MustCompile(`^traefik\.http\.routers\.([\w-]+)\.(\w+)$`).FindStringSubmatch(k); m != nil {
			if routers[m[1]] == nil {
				routers[m[1]] = map[string]string{}
			}
			routers[m[1]][m[2]] = v
		}
	}
	if len(services) != 1 {
		t.Fatalf("meshd labels define Traefik services %v, want one", services)
	}
	var svc string
	for s := range services {
		svc = s
	}
	lb := "traefik.http.services." + svc + ".loadbalancer."
	for key, want := range map[string]string{
		"server.port":            meshdPort,
		"sticky.cookie.name":     "cm_node",
		"healthcheck.path":       "/health/ready",
		"sticky.cookie.httponly": "true",
	} {
		if got := labels[lb+key]; got != want {
			t.Errorf("%s%s = %q, want %q", lb, key, got, want)
		}
	}
	var ws, http bool
	eps := map[string]bool{}
	for name, r := range routers {
		if r["service"] != svc || !entrypoints[r["entrypoints"]] {
			t.Errorf("router %s: service %q entrypoint %q (want %s on a defined entrypoint)", name, r["service"], r["entrypoints"], svc)
		}
		eps[r["entrypoints"]] = true
		ws = ws || r["rule"] == "Path(`/ws`)" || r["rule"] == "PathPrefix(`/`)"
		http = http || r["rule"] == "PathPrefix(`/`)"
	}
	if !ws || !http || len(eps) != 1 {
		t.Errorf("routers %v: /ws and HTTP must both route through one entrypoint", routers)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// bindMounts returns source (relative to compose/) → container path.
func bindMounts(t *testing.T, s composeService, named map[string]any, svc string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Errorf("%s: volume %q", svc, v)
			continue
		}
		src, dst := parts[0], parts[1]
		switch {
		case strings.HasPrefix(src, "."):
			if _, err := os.Stat(src); err != nil {
				t.Errorf("%s mounts %s, which is not in the repository: %v", svc, src, err)
			}
			out[filepath.Clean(src)] = dst
		case strings.HasPrefix(src, "/"): // host path (the Docker socket)
		default:
			if _, ok := named[src]; !ok {
				t.Errorf("%s uses volume %s, not declared under volumes:", svc, src)
			}
		}
	}
	return out
}

func TestComposeMountsAndProvisioning(t *testing.T) {
	c := loadCompose(t)
	for name, s := range c.Services {
		bindMounts(t, s, c.Volumes, name)
	}
	prom := bindMounts(t, c.Services["prometheus"], c.Volumes, "prometheus")
	if prom["../dashboards/alerts.yml"] == "" || prom["prometheus/prometheus.yml"] != "/etc/prometheus/prometheus.yml" {
		t.Fatalf("prometheus mounts %v", prom)
	}
	var pcfg struct {
		Global        map[string]string `yaml:"global"`
		RuleFiles     []string          `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	decodeStrict(t, "prometheus/prometheus.yml", &pcfg)
	// rule_files resolve against the config file's directory: in the
	// container that must be where alerts.yml is mounted, in the repository
	// dashboards/alerts.yml itself (so promtool check config passes here).
	alerts, err := os.Stat("../dashboards/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var loaded bool
	for _, rf := range pcfg.RuleFiles {
		if filepath.IsAbs(rf) {
			t.Errorf("rule_files %q is absolute: it exists only inside the container", rf)
			continue
		}
		inRepo, err := os.Stat(filepath.Join("prometheus", rf))
		inContainer := path.Join(path.Dir(prom["prometheus/prometheus.yml"]), rf)
		if err == nil && os.SameFile(inRepo, alerts) && inContainer == prom["../dashboards/alerts.yml"] {
			loaded = true
		}
	}
	if !loaded {
		t.Errorf("rule_files %v does not load dashboards/alerts.yml both in the repository and where the container mounts it (%s)", pcfg.RuleFiles, prom["../dashboards/alerts.yml"])
	}
	var targets []string
	for _, sc := range pcfg.ScrapeConfigs {
		if sc.JobName != "meshd" || (sc.MetricsPath != "" && sc.MetricsPath != "/metrics") {
			t.Errorf("scrape job %q path %q, want meshd /metrics (alerts.yml uses up{job=\"meshd\"})", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	var want []string
	for _, m := range meshdServices(t, c) {
		want = append(want, net.JoinHostPort(m, meshdPort))
	}
	sort.Strings(targets)
	if !slices.Equal(targets, want) {
		t.Errorf("Prometheus scrapes %v, want every replica directly: %v", targets, want)
	}

	graf := bindMounts(t, c.Services["grafana"], c.Volumes, "grafana")
	if graf["grafana/provisioning"] != "/etc/grafana/provisioning" {
		t.Errorf("grafana provisioning mount %v", graf)
	}
	var dprov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name, Folder, Type string
			DisableDeletion    bool `yaml:"disableDeletion"`
			AllowUIUpdates     bool `yaml:"allowUiUpdates"`
			Options            struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	decodeStrict(t, "grafana/provisioning/dashboards/meshd.yml", &dprov)
	if len(dprov.Providers) != 1 || dprov.Providers[0].Type != "file" {
		t.Fatalf("dashboard providers %+v", dprov.Providers)
	}
	if dst := graf["../dashboards/meshd.json"]; filepath.Dir(dst) != dprov.Providers[0].Options.Path {
		t.Errorf("meshd.json is mounted at %q, the provider reads %q", dst, dprov.Providers[0].Options.Path)
	}
	var dsprov struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, Access, URL string
			IsDefault                    bool `yaml:"isDefault"`
			Editable                     bool `yaml:"editable"`
		} `yaml:"datasources"`
	}
	decodeStrict(t, "grafana/provisioning/datasources/prometheus.yml", &dsprov)
	if len(dsprov.Datasources) != 1 || dsprov.Datasources[0].Type != "prometheus" || dsprov.Datasources[0].URL != "http://prometheus:9090" || !dsprov.Datasources[0].IsDefault {
		t.Errorf("datasources %+v: want the default prometheus datasource at http://prometheus:9090", dsprov.Datasources)
	}
}

// The file must load in both Compose generations: Debian's docker-compose
// 1.29 (v1, its own JSON schema) and compose-go v2 (Docker Compose v2's
// loader). scripts/ops-tools.sh installs both; each test skips, with the
// reason, only when its tool is missing.
func TestComposeConfigV1(t *testing.T) {
	bin := opstools.Find(t, "docker-compose")
	t.Log(strings.TrimSpace(opstools.Run(t, ".", bin, "version", "--short")))
	opstools.Run(t, ".", bin, "-p", "meshd-ha-local", "-f", composeFile, "config", "-q")
}

func TestComposeConfigV2(t *testing.T) {
	bin := opstools.Find(t, "composecheck")
	t.Log(strings.TrimSpace(opstools.Run(t, ".", bin, "-p", "meshd-ha-local", composeFile)))
}

// Both loaders must reject a misspelt key, or the tests above prove nothing.
func TestComposeLoadersRejectTypos(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), composeFile)
	if err := os.WriteFile(bad, bytes.Replace(raw, []byte("stop_grace_period:"), []byte("stop_grace_perod:"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"docker-compose", "-f", bad, "config", "-q"}, {"composecheck", bad}} {
		t.Run(args[0], func(t *testing.T) {
			out, err := exec.Command(opstools.Find(t, args[0]), args[1:]...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "stop_grace_perod") {
				t.Fatalf("misspelt key accepted: %v\n%s", err, out)
			}
		})
	}
}

// The shipped Prometheus config passes promtool as it is in the
// repository (its rule file included).
func TestPromtoolCheckConfig(t *testing.T) {
	out := opstools.Run(t, ".", opstools.Find(t, "promtool"), "check", "config", "prometheus/prometheus.yml")
	t.Log(out)
	if !strings.Contains(out, "SUCCESS: 1 rule files found") {
		t.Errorf("promtool did not load the rule file:\n%s", out)
	}
}

func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// join continuation lines, drop comments
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(raw), " ")
	var froms []string
	var user, health string
	var final []string // instructions of the last stage
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr := strings.ToUpper(strings.Fields(line)[0])
		switch instr {
		case "FROM":
			froms = append(froms, line)
			final = nil
		case "USER":
			user = strings.Fields(line)[1]
		case "HEALTHCHECK":
			health = line
		}
		final = append(final, line)
	}
	if len(froms) < 2 {
		t.Fatalf("not multi-stage: %v", froms)
	}
	last := strings.Fields(froms[len(froms)-1])[1]
	// Every base image is pinned: a digest, or an exact x.y.z tag.
	pinned := regexp.MustCompile(`^[\w./-]+(:[\w.-]*\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$`)
	for _, f := range froms {
		img := strings.Fields(f)[1]
		if !pinned.MatchString(img) || (!strings.Contains(img, "@sha256:") && !strings.Contains(img, ":")) {
			t.Errorf("%s: base image not pinned to a digest or an exact x.y.z tag", f)
		}
	}
	for _, l := range []string{"version=\"${VERSION}\"", "revision=\"${GIT_SHA}\"", "source="} {
		if !slices.ContainsFunc(final, func(line string) bool {
			return strings.HasPrefix(line, "LABEL ") && strings.Contains(line, "org.opencontainers.image."+l)
		}) {
			t.Errorf("final stage lacks the OCI label org.opencontainers.image.%s", l)
		}
	}
	if !strings.Contains(string(raw), "BuildKit") {
		t.Error("the Dockerfile uses RUN --mount: say that it needs BuildKit")
	}
	if !strings.HasPrefix(last, "alpine") && !strings.HasPrefix(last, "busybox") {
		t.Errorf("final image %s: want alpine or busybox (the HEALTHCHECK needs wget; meshd has no healthcheck command)", last)
	}
	if user == "" || user == "root" || strings.HasPrefix(user, "0") {
		t.Errorf("USER %q: must run as non-root", user)
	}
	if !strings.Contains(health, "http://127.0.0.1:"+meshdPort+"/health") || strings.Contains(health, "/health/ready") {
		t.Errorf("HEALTHCHECK %q: want liveness /health on %s", health, meshdPort)
	}
	if !strings.Contains(text, "CGO_ENABLED=0") || !strings.Contains(text, "./cmd/meshd") {
		t.Error("build must be CGO_ENABLED=0 of ./cmd/meshd (static)")
	}
	// The Makefile's LDFLAGS, with make's $(VAR) as the Dockerfile's ${VAR}.
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LDFLAGS\s*:?=\s*(.+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("no LDFLAGS in Makefile")
	}
	ld := regexp.MustCompile(`\$\((\w+)\)`).ReplaceAllString(strings.TrimSpace(string(m[1])), "$${$1}")
	if !strings.Contains(text, ld) {
		t.Errorf("the build does not use the Makefile's ldflags %q", ld)
	}
	for _, want := range []string{"EXPOSE " + meshdPort, "STOPSIGNAL SIGTERM"} {
		if !slices.Contains(final, want) {
			t.Errorf("final stage lacks %q", want)
		}
	}
	if !strings.Contains(text, "COPY --from=") {
		t.Error("final stage must copy the binary from the build stage")
	}
	for _, line := range final {
		if strings.HasPrefix(line, "ENV ") {
			var names []string
			for _, f := range strings.Fields(line)[1:] {
				names = append(names, strings.SplitN(f, "=", 2)[0])
			}
			checkEnvDocumented(t, "Dockerfile", names)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
