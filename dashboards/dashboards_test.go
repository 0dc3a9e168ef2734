// Package dashboards_test checks the Grafana dashboard and the Prometheus
// alert rules statically: importable structure, layout, the seed's panels
// (docs/protocol.md B.15, with upstream's broken metric name fixed), valid PromQL
// and alert templates, and that README.md maps every panel and rule. That
// every metric they name is really exported is checked against a running
// meshd by cmd/meshd/ops_test.go.
package dashboards_test

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"
)

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	Datasource *datasource `json:"datasource"`
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Legend     string      `json:"legendFormat"`
}

type panel struct {
	ID          int                      `json:"id"`
	Type        string                   `json:"type"`
	Title       string                   `json:"title"`
	Description string                   `json:"description"`
	Datasource  *datasource              `json:"datasource"`
	GridPos     struct{ X, Y, W, H int } `json:"gridPos"`
	Targets     []target                 `json:"targets"`
	Panels      []panel                  `json:"panels"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Refresh       string  `json:"refresh"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string      `json:"name"`
			Type       string      `json:"type"`
			Query      any         `json:"query"`
			Datasource *datasource `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) (dashboard, []panel) {
	t.Helper()
	raw, err := os.ReadFile("meshd.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("meshd.json: %v", err)
	}
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return d, all
}

const dsVar = "${datasource}"

func TestDashboardImportable(t *testing.T) {
	d, panels := loadDashboard(t)
	if d.UID != "meshd-broker" || d.Title == "" || d.SchemaVersion < 38 || d.Refresh == "" {
		t.Fatalf("uid %q title %q schemaVersion %d refresh %q", d.UID, d.Title, d.SchemaVersion, d.Refresh)
	}
	var haveDS bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" {
			haveDS = v.Type == "datasource" && v.Query == "prometheus"
		}
		if v.Datasource != nil && v.Datasource.UID != dsVar {
			t.Errorf("variable %s pins datasource %q", v.Name, v.Datasource.UID)
		}
	}
	if !haveDS {
		t.Fatal(`no "datasource" variable of type datasource querying prometheus`)
	}
	ids := map[int]bool{}
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("duplicate panel id %d", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Description == "" {
			t.Errorf("panel %q has no description", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != dsVar || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q datasource %+v, want the %s variable", p.Title, p.Datasource, dsVar)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no queries", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource == nil || tg.Datasource.UID != dsVar {
				t.Errorf("panel %q query %s datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
}

func TestDashboardLayout(t *testing.T) {
	_, panels := loadDashboard(t)
	type cell struct{ x, y int }
	used := map[cell]string{}
	for _, p := range panels {
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
			continue
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := used[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
					return
				}
				used[cell{x, y}] = p.Title
			}
		}
	}
}

// seedPanels are docs/protocol.md B.15's panels as meshd ships them. Changes
// from upstream: sums across replicas, max for the database-wide queue
// gauge, $__rate_interval, and broker_connections_rejected_total (upstream
// queried broker_connections_rejected, which does not exist).
var seedPanels = []struct{ title, typ, expr, legend string }{
	{"Active connections", "stat", "sum(broker_connections_active)", ""},
	{"Queue depth", "stat", "max(broker_queue_depth)", ""},
	{"Legacy auth hits (24h)", "stat", "sum(increase(broker_legacy_auth_hits_total[24h]))", ""},
	{"Messages routed / sec", "timeseries", "sum by (priority) (rate(broker_messages_routed_total[$__rate_interval]))", "{{priority}}"},
	{"Messages rejected / sec", "timeseries", "sum by (reason) (rate(broker_messages_rejected_total[$__rate_interval]))", "{{reason}}"},
	{"Messages dropped by grant / sec", "timeseries", "sum by (cap) (rate(broker_messages_dropped_by_grant_total[$__rate_interval]))", "{{cap}}"},
	{"Connections rejected / sec", "timeseries", "sum by (reason) (rate(broker_connections_rejected_total[$__rate_interval]))", "{{reason}}"},
}

// replicaPanels are meshd's additions: title → a metric each must query.
var replicaPanels = map[string][]string{
	"Connections per node":              {"broker_connections_active"},
	"Fan-out publish / receive rate":    {"broker_fanout_published_total", "broker_fanout_received_total"},
	"Leader per job":                    {"broker_leader"},
	"Queue oldest age":                  {"broker_queue_oldest_age_seconds"},
	"Ready / draining state":            {"broker_draining", "broker_db_healthy", "broker_nats_connected"},
	"Legacy auth drain (hits per hour)": {"sum(increase(broker_legacy_auth_hits_total[1h]))"},
	"Legacy auth users and hits (24h)":  {"broker_legacy_auth_users", "broker_legacy_auth_hits_total"},
	"Delivery canary round trip":        {"meshd_canary_seconds_bucket"},
	"Delivery canary failures / sec":    {"meshd_canary_failures_total"},
}

func TestDashboardPanels(t *testing.T) {
	_, panels := loadDashboard(t)
	byTitle := map[string]panel{}
	for _, p := range panels {
		if _, dup := byTitle[p.Title]; dup {
			t.Errorf("duplicate panel title %q", p.Title)
		}
		byTitle[p.Title] = p
	}
	for _, s := range seedPanels {
		p, ok := byTitle[s.title]
		if !ok {
			t.Errorf("seed panel %q missing", s.title)
			continue
		}
		if p.Type != s.typ || len(p.Targets) != 1 || p.Targets[0].Expr != s.expr ||
			(s.legend != "" && p.Targets[0].Legend != s.legend) {
			t.Errorf("seed panel %q: %s %+v, want %s %q legend %q", s.title, p.Type, p.Targets, s.typ, s.expr, s.legend)
		}
	}
	if d := byTitle["Legacy auth hits (24h)"].Description; !strings.Contains(d, "zero") || !strings.Contains(d, "BROKER_LEGACY_AUTH") {
		t.Errorf("legacy auth panel description should say it drains to zero and name the shim: %q", d)
	}
	for title, metrics := range replicaPanels {
		p, ok := byTitle[title]
		if !ok {
			t.Errorf("panel %q missing", title)
			continue
		}
		var all string
		for _, tg := range p.Targets {
			all += tg.Expr + "\n"
		}
		for _, m := range metrics {
			if !strings.Contains(all, m) {
				t.Errorf("panel %q does not query %s", title, m)
			}
		}
	}
}

var grafanaVarRe = regexp.MustCompile(`\$\{?(\w+)\}?`)

func TestDashboardPromQLParses(t *testing.T) {
	_, panels := loadDashboard(t)
	for _, p := range panels {
		for _, tg := range p.Targets {
			expr := grafanaVarRe.ReplaceAllStringFunc(tg.Expr, func(v string) string {
				if strings.HasPrefix(strings.Trim(v, "${}"), "__") {
					return "5m"
				}
				return ".*"
			})
			if _, err := parser.ParseExpr(expr); err != nil {
				t.Errorf("panel %q %s: %q: %v", p.Title, tg.RefID, tg.Expr, err)
			}
		}
	}
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	raw, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name     string `yaml:"name"`
			Interval string `yaml:"interval"`
			Rules    []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true) // a misspelt field is an error, as in promtool
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var out []rule
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name and rules", g.Name)
		}
		out = append(out, g.Rules...)
	}
	return out
}

// promTemplate parses an annotation the way Prometheus expands it (the
// $labels/$value prelude and its template functions, stubbed).
func promTemplate(text string) error {
	funcs := template.FuncMap{}
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "title", "toUpper", "toLower", "query", "first", "value", "label", "reReplaceAll", "match", "args", "safeHtml", "externalURL", "pathPrefix"} {
		funcs[f] = func(...any) any { return nil }
	}
	_, err := template.New("").Funcs(funcs).Option("missingkey=zero").
		Parse("{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}" + text)
	return err
}

// wantAlerts are issue 6's alerts: name → expression and hold time.
var wantAlerts = map[string]struct{ expr, hold string }{
	"MeshdDatabaseUnhealthy":        {"broker_db_healthy == 0", "1m"},
	"MeshdNATSDisconnected":         {"broker_nats_connected == 0", "1m"},
	"MeshdQueueDepthHigh":           {"max(broker_queue_depth) > 10000", "5m"},
	"MeshdQueueOldestAgeHigh":       {"max(broker_queue_oldest_age_seconds) > 300", "10m"},
	"MeshdCapacityRejectionsRising": {`sum(rate(broker_connections_rejected_total{reason="capacity"}[5m])) > 0`, "15m"},
	"MeshdNoLeader":                 {"max by (singleton) (broker_leader) == 0", "1m"},
	"MeshdReplicaNotReady":          {"(broker_draining == 1) or (broker_db_healthy == 0) or (broker_nats_connected == 0)", "5m"},
	"MeshdLegacyAuthAfterSunset":    {"sum(increase(broker_legacy_auth_hits_total[1h])) > 0 and on() vector(time()) > 1778803200", ""},
}

func TestAlertRules(t *testing.T) {
	rules := loadRules(t)
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Alert == "" || seen[r.Alert] {
			t.Errorf("alert %q: empty or duplicate name", r.Alert)
		}
		seen[r.Alert] = true
		if _, err := parser.ParseExpr(r.Expr); err != nil {
			t.Errorf("%s: %q: %v", r.Alert, r.Expr, err)
		}
		for _, d := range []string{r.For, r.KeepFiringFor} {
			if _, err := model.ParseDuration(d); d != "" && err != nil {
				t.Errorf("%s: duration %q: %v", r.Alert, d, err)
			}
		}
		switch r.Labels["severity"] {
		case "critical", "warning", "info":
		default:
			t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: needs summary and description", r.Alert)
		}
		for k, v := range r.Annotations {
			if err := promTemplate(v); err != nil {
				t.Errorf("%s: annotation %s: %v", r.Alert, k, err)
			}
		}
		if w, ok := wantAlerts[r.Alert]; ok && (r.Expr != w.expr || r.For != w.hold) {
			t.Errorf("%s: expr %q for %q, want %q for %q", r.Alert, r.Expr, r.For, w.expr, w.hold)
		}
	}
	for name := range wantAlerts {
		if !seen[name] {
			t.Errorf("alert %s missing", name)
		}
	}
}

// The sunset timestamp is 2026-05-15T00:00:00Z (B.9.3 Deprecation header),
// and comparing time() directly would not parse (scalar comparisons need bool).
func TestSunsetExpression(t *testing.T) {
	if _, err := parser.ParseExpr("increase(broker_legacy_auth_hits_total[1h]) > 0 and time() > 1778803200"); err == nil {
		t.Error("the naive scalar comparison parses; the rule's workaround may be unnecessary")
	}
	if got := model.Time(1778803200 * 1000).Time().UTC().Format("2006-01-02T15:04:05Z"); got != "2026-05-15T00:00:00Z" {
		t.Errorf("sunset %s", got)
	}
}

// README.md maps every panel to its queries and explains every rule.
func TestReadmeMapsEveryPanelAndRule(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	_, panels := loadDashboard(t)
	for _, p := range panels {
		if !strings.Contains(readme, p.Title) {
			t.Errorf("README.md does not mention panel %q", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(readme, "`"+tg.Expr+"`") {
				t.Errorf("README.md does not show panel %q query `%s`", p.Title, tg.Expr)
			}
		}
	}
	for _, r := range loadRules(t) {
		if !strings.Contains(readme, r.Alert) || !strings.Contains(readme, "`"+r.Expr+"`") {
			t.Errorf("README.md does not show alert %s with `%s`", r.Alert, r.Expr)
		}
	}
}

// In a Prometheus shared with other services every Go process exports
// go_goroutines and process_resident_memory_bytes: the per-replica panels
// filter by the job and instance variables.
func TestDashboardJobFilter(t *testing.T) {
	d, panels := loadDashboard(t)
	var job bool
	for _, v := range d.Templating.List {
		q, _ := v.Query.(map[string]any)
		job = job || (v.Name == "job" && v.Type == "query" && q["query"] == "label_values(broker_connections_active, job)")
	}
	if !job {
		t.Error(`no "job" query variable over broker_connections_active`)
	}
	for _, p := range panels {
		for _, tg := range p.Targets {
			runtime := strings.Contains(tg.Expr, "go_") || strings.Contains(tg.Expr, "process_")
			if (runtime || strings.Contains(tg.Expr, `$instance`)) && !strings.Contains(tg.Expr, `job=~"$job", instance=~"$instance"`) {
				t.Errorf("panel %q: %s does not filter by job and instance", p.Title, tg.Expr)
			}
		}
	}
}
