package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/meshd/meshd/internal/testpg"
)

// knownMissing lists metrics that dashboards/ uses but a running meshd does
// not export yet, each with what will export it. It cannot go stale: the
// test fails when one of them appears in /metrics (delete the entry then)
// and when the dashboard and alerts no longer use it.
//
// Empty now: broker_leader, the last entry ("pending issue 5: ha not wired
// into cmd/meshd"), is exported since runSingletons registers it.
var knownMissing = map[string]string{}

// prometheusSynthetic are series Prometheus itself attaches to every scrape
// target; meshd cannot export them.
var prometheusSynthetic = map[string]bool{"up": true}

// targetLabels are attached by Prometheus to every scraped series. A metric
// label with the same name is renamed exported_<name> (honor_labels: false,
// the default that compose/prometheus.yml and the ServiceMonitor keep).
var targetLabels = []string{"instance", "job"}

// family is what one scrape says about a metric: type and label names.
type family struct {
	typ    string
	labels []string            // sorted label names (same on every series)
	values map[string][]string // label name → sorted distinct values
	sample float64             // value of the first series
}

// TestOperations runs the real meshd binary against a real PostgreSQL and
// checks /metrics against docs/protocol.md B.9.1 and against every expression of
// dashboards/meshd.json and dashboards/alerts.yml (A.3-3: the dashboard
// uses only metric names that /metrics really exports).
func TestOperations(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	p := startMeshd(t, "DATABASE_URL="+dsn, "MESHD_NODE_ID=ops-test")
	fams := scrape(t, p.base+"/metrics")

	t.Run("B.9.1 series", func(t *testing.T) { checkUpstreamSeries(t, fams) })
	t.Run("meshd series", func(t *testing.T) { checkOwnSeries(t, fams) })
	t.Run("dashboard and alerts use exported metrics", func(t *testing.T) {
		exprs := append(dashboardExprs(t, "../../dashboards/meshd.json"), alertExprs(t, "../../dashboards/alerts.yml")...)
		if len(exprs) < 20 {
			t.Fatalf("only %d expressions found: the extractor is broken", len(exprs))
		}
		used := map[string]bool{}
		for _, e := range exprs {
			for _, name := range checkExpr(t, e, fams) {
				used[name] = true
			}
		}
		for name, why := range knownMissing {
			if _, ok := fams[name]; ok {
				t.Errorf("%s is now exported by meshd: remove it from knownMissing (%s)", name, why)
			}
			if !used[name] {
				t.Errorf("knownMissing lists %s but no dashboard or alert expression uses it", name)
			}
		}
		t.Logf("%d expressions, %d distinct metrics, all exported except known-missing %v", len(exprs), len(used), sortedKeys(knownMissing))
	})
}

// With METRICS_ADDR, /metrics is served on that listener only: the public
// port answers it with the JSON 404, and the metrics port serves nothing
// else.
func TestMetricsAddr(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startMeshd(t, "DATABASE_URL="+dsn, "MESHD_NODE_ID=metrics-addr", "METRICS_ADDR="+maddr)
	var fams map[string]family
	deadline := time.Now().Add(10 * time.Second)
	for fams == nil { // the metrics listener opens with the public one; be sure it answers
		if resp, err := http.Get("http://" + maddr + "/metrics"); err == nil {
			resp.Body.Close()
			fams = scrape(t, "http://"+maddr+"/metrics")
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if _, ok := fams["meshd_build_info"]; !ok {
		t.Error("METRICS_ADDR /metrics lacks meshd_build_info")
	}
	for _, u := range []string{p.base + "/metrics", "http://" + maddr + "/health", "http://" + maddr + "/ws"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"error":"not_found"`) {
			t.Errorf("GET %s: %d %s, want the JSON 404", u, resp.StatusCode, body)
		}
	}
}

func scrape(t *testing.T, url string) map[string]family {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	tp := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := tp.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid text exposition: %v", err)
	}
	return families(t, mfs)
}

func families(t *testing.T, mfs map[string]*dto.MetricFamily) map[string]family {
	t.Helper()
	out := map[string]family{}
	for name, mf := range mfs {
		f := family{typ: strings.ToLower(mf.GetType().String()), values: map[string][]string{}}
		for i, m := range mf.GetMetric() {
			var names []string
			for _, lp := range m.GetLabel() {
				names = append(names, lp.GetName())
				if !slices.Contains(f.values[lp.GetName()], lp.GetValue()) {
					f.values[lp.GetName()] = append(f.values[lp.GetName()], lp.GetValue())
				}
			}
			sort.Strings(names)
			if i == 0 {
				f.labels = names
				f.sample = m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
			} else if !slices.Equal(f.labels, names) {
				t.Errorf("%s: series with label sets %v and %v", name, f.labels, names)
			}
		}
		for _, v := range f.values {
			sort.Strings(v)
		}
		out[name] = f
		if f.typ == "histogram" {
			// PromQL reads a histogram as its _bucket (with le), _sum and
			// _count series.
			b := f
			b.labels = append(slices.Clone(f.labels), "le")
			sort.Strings(b.labels)
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = b, f, f
		}
	}
	return out
}

type wantSeries struct {
	name, typ string
	labels    []string
	values    []string // exact values of the only label, when it is a closed enum
}

// upstreamSeries is docs/protocol.md B.9.1 "Every metric [HEAD]".
var upstreamSeries = []wantSeries{
	{"broker_connections_total", "counter", nil, nil},
	{"broker_connections_rejected_total", "counter", []string{"reason"}, []string{"bad_session_pubkey", "capacity",
		"timestamp_skew", "malformed", "bad_signature", "revoked", "unauthorized", "bad_parent_pubkey",
		"attestation_mismatch", "attestation_expired", "attestation_ttl_too_long", "attestation_bad_signature",
		"attestation_malformed", "session_timestamp_skew", "session_bad_signature", "session_malformed",
		"parent_member_id_mismatch", "replayed", "member_capacity", "rate_limited"}}, // the last three: A.3-21/22
	{"broker_connections_active", "gauge", nil, nil},
	{"broker_messages_routed_total", "counter", []string{"priority"}, []string{"now", "next", "low", "stream"}},
	{"broker_messages_rejected_total", "counter", []string{"reason"}, []string{"rate_limit", "too_large", "no_recipient", "parse_or_handler"}},
	{"broker_messages_dropped_by_grant_total", "counter", []string{"cap"}, []string{"dm", "broadcast"}},
	{"broker_legacy_auth_hits_total", "counter", nil, nil},
	{"broker_queue_depth", "gauge", nil, nil},
	{"broker_ttl_sweeps_total", "counter", []string{"flipped"}, nil},
	{"broker_hook_requests_total", "counter", nil, nil},
	{"broker_hook_requests_rate_limited_total", "counter", nil, nil},
	{"broker_db_healthy", "gauge", nil, nil},
}

// extraValues are label values meshd adds to an upstream enum.
var extraValues = map[string][]string{
	// A.3-9: a socket that sends no hello within 10 s is closed 1008
	// hello_timeout and counted as a rejected connection.
	"broker_connections_rejected_total": {"hello_timeout"},
	// A send the broker could not take (database or bus down) is rejected
	// with reason unavailable.
	"broker_messages_rejected_total": {"unavailable"},
}

// ownSeries are meshd's additions (issue 6 "Metrics"); label values are
// meshd's to extend, so only label names are pinned.
var ownSeries = []wantSeries{
	{"broker_queue_oldest_age_seconds", "gauge", nil, nil},
	{"broker_ttl_sweep_flipped_total", "counter", nil, nil},
	{"broker_push_dropped_total", "counter", []string{"reason"}, nil},
	{"broker_redrain_triggers_total", "counter", nil, nil},
	{"broker_draining", "gauge", nil, nil},
	{"broker_connections_closed_total", "counter", []string{"reason"}, nil},
	{"broker_nats_connected", "gauge", nil, nil},
	{"broker_fanout_published_total", "counter", []string{"kind"}, nil},
	{"broker_fanout_received_total", "counter", []string{"kind"}, nil},
	{"broker_fanout_publish_errors_total", "counter", []string{"kind"}, nil},
	{"broker_fanout_subscriptions", "gauge", nil, nil},
	{"broker_fanout_slow_consumer_total", "counter", nil, nil},
	{"broker_leader", "gauge", []string{"singleton"}, nil},
	{"go_goroutines", "gauge", nil, nil},
	{"process_resident_memory_bytes", "gauge", nil, nil},
	{"meshd_build_info", "gauge", []string{"git_sha", "go_version", "version"}, []string{"abc1234"}},
	{"meshd_canary_seconds", "histogram", nil, nil},
	{"meshd_canary_failures_total", "counter", []string{"stage"}, nil},
	{"broker_legacy_auth_users", "gauge", nil, nil},
}

func checkSeries(t *testing.T, fams map[string]family, want []wantSeries) {
	t.Helper()
	for _, w := range want {
		f, ok := fams[w.name]
		switch {
		case !ok:
			t.Errorf("%s: not exported", w.name)
			continue
		case f.typ != w.typ:
			t.Errorf("%s: TYPE %s, want %s", w.name, f.typ, w.typ)
		case !slices.Equal(f.labels, w.labels):
			t.Errorf("%s: labels %v, want %v", w.name, f.labels, w.labels)
		}
		if w.values != nil {
			want := slices.Sorted(slices.Values(append(slices.Clone(w.values), extraValues[w.name]...)))
			if got := f.values[w.labels[0]]; !slices.Equal(got, want) {
				t.Errorf("%s: %s values %v, want %v", w.name, w.labels[0], got, want)
			}
		}
	}
}

func checkUpstreamSeries(t *testing.T, fams map[string]family) {
	checkSeries(t, fams, upstreamSeries)
	for _, v := range fams["broker_ttl_sweeps_total"].values["flipped"] {
		if !slices.Contains([]string{"0", "1", "2-10", "11+"}, v) {
			t.Errorf("broker_ttl_sweeps_total{flipped=%q}: want a bounded bucket (0, 1, 2-10, 11+)", v)
		}
	}
	if f := fams["broker_db_healthy"]; f.sample != 1 {
		t.Errorf("broker_db_healthy = %v on a healthy replica", f.sample)
	}
}

func checkOwnSeries(t *testing.T, fams map[string]family) {
	checkSeries(t, fams, ownSeries)
	if f := fams["broker_nats_connected"]; f.sample != 1 {
		t.Errorf("broker_nats_connected = %v while connected", f.sample)
	}
	if f := fams["meshd_build_info"]; f.sample != 1 || !slices.Equal(f.values["version"], []string{"e2e"}) || !slices.Equal(f.values["go_version"], []string{runtime.Version()}) {
		t.Errorf("meshd_build_info = %v %v, want 1 with the stamped version e2e and %s", f.sample, f.values, runtime.Version())
	}
	if f := fams["broker_draining"]; f.sample != 0 {
		t.Errorf("broker_draining = %v before SIGTERM", f.sample)
	}
	for name, f := range fams {
		if strings.HasPrefix(name, "broker_") && f.typ == "counter" && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
}

// promExpr is one PromQL expression and where it came from.
type promExpr struct {
	where  string
	expr   string
	legend string // Grafana legendFormat, or the rule's annotations/labels text
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type grafanaPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID  string `json:"refId"`
		Expr   string `json:"expr"`
		Legend string `json:"legendFormat"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // collapsed rows
}

var labelValuesRe = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)

func dashboardExprs(t *testing.T, path string) []promExpr {
	t.Helper()
	var d struct {
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readFile(t, path), &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []promExpr
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					t.Errorf("panel %q target %s: empty expr", p.Title, tg.RefID)
				}
				out = append(out, promExpr{where: "panel " + p.Title + "/" + tg.RefID, expr: tg.Expr, legend: tg.Legend})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		// label_values(metric, label) is Grafana syntax, not PromQL: check
		// it as the selector metric{label!=""}.
		m := labelValuesRe.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: unsupported query %q", v.Name, v.Definition)
			continue
		}
		out = append(out, promExpr{where: "variable " + v.Name, expr: m[1] + `{` + m[2] + `!=""}`})
	}
	return out
}

func alertExprs(t *testing.T, path string) []promExpr {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, path), &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []promExpr
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			text := ""
			for _, k := range sortedKeys(r.Annotations) {
				text += r.Annotations[k] + "\n"
			}
			for _, k := range sortedKeys(r.Labels) {
				text += r.Labels[k] + "\n"
			}
			out = append(out, promExpr{where: "alert " + r.Alert + r.Record, expr: r.Expr, legend: text})
		}
	}
	return out
}

var grafanaVarRe = regexp.MustCompile(`\$\{?(\w+)\}?`)

// substituteGrafanaVars turns a panel query into PromQL: interval macros
// become a duration, other variables (used in regex matchers) a regex.
func substituteGrafanaVars(expr string) string {
	return grafanaVarRe.ReplaceAllStringFunc(expr, func(v string) string {
		if strings.HasPrefix(strings.Trim(v, "${}"), "__") {
			return "5m"
		}
		return ".*"
	})
}

// checkExpr parses e, checks every metric it names and every label it
// groups by, matches on or prints, and returns the metric names.
func checkExpr(t *testing.T, e promExpr, fams map[string]family) []string {
	t.Helper()
	ast, err := parser.ParseExpr(substituteGrafanaVars(e.expr))
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", e.where, e.expr, err)
		return nil
	}
	labelsOf := func(name string) ([]string, bool) {
		f, ok := fams[name]
		return scrapedLabels(f.labels), ok
	}
	var names []string
	pending := false
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name == "" {
			t.Errorf("%s: selector %s names no metric", e.where, vs)
			return nil
		}
		names = append(names, vs.Name)
		if prometheusSynthetic[vs.Name] {
			return nil
		}
		have, ok := labelsOf(vs.Name)
		if !ok {
			if _, ok := knownMissing[vs.Name]; ok {
				pending = true // its labels are unknown until it is exported
			} else {
				t.Errorf("%s: metric %s is not exported by meshd (%q)", e.where, vs.Name, e.expr)
			}
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != model.MetricNameLabel && !slices.Contains(have, m.Name) {
				t.Errorf("%s: %s has no label %q (has %v)", e.where, vs.Name, m.Name, have)
			}
		}
		return nil
	})
	if pending {
		return names
	}
	checkGrouping(t, e, ast, labelsOf)
	for _, l := range referencedLabels(e.legend) {
		if out := outputLabels(ast, labelsOf); !slices.Contains(out, l) {
			t.Errorf("%s: legend/annotation uses label %q, the expression yields %v", e.where, l, out)
		}
	}
	return names
}

// scrapedLabels is the label set Prometheus stores for a metric with the
// given label names.
func scrapedLabels(names []string) []string {
	out := slices.Clone(targetLabels)
	for _, n := range names {
		if slices.Contains(targetLabels, n) {
			n = "exported_" + n
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// checkGrouping: every label an aggregation groups by must exist on every
// metric it aggregates.
func checkGrouping(t *testing.T, e promExpr, ast parser.Expr, labelsOf func(string) ([]string, bool)) {
	t.Helper()
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		agg, ok := n.(*parser.AggregateExpr)
		if !ok || agg.Without {
			return nil
		}
		parser.Inspect(agg.Expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok || prometheusSynthetic[vs.Name] {
				return nil
			}
			have, ok := labelsOf(vs.Name)
			if !ok {
				return nil // reported by checkExpr
			}
			for _, g := range agg.Grouping {
				if !slices.Contains(have, g) {
					t.Errorf("%s: groups %s by %q, which it does not have (%v)", e.where, vs.Name, g, have)
				}
			}
			return nil
		})
		return nil
	})
}

// outputLabels approximates the label names of an expression's result.
func outputLabels(n parser.Expr, labelsOf func(string) ([]string, bool)) []string {
	switch n := n.(type) {
	case *parser.AggregateExpr:
		if !n.Without {
			return n.Grouping
		}
		return outputLabels(n.Expr, labelsOf)
	case *parser.BinaryExpr:
		if l := outputLabels(n.LHS, labelsOf); len(l) > 0 {
			return l
		}
		return outputLabels(n.RHS, labelsOf)
	case *parser.ParenExpr:
		return outputLabels(n.Expr, labelsOf)
	case *parser.Call:
		for _, a := range n.Args {
			if l := outputLabels(a, labelsOf); len(l) > 0 {
				return l
			}
		}
	case *parser.MatrixSelector:
		return outputLabels(n.VectorSelector, labelsOf)
	case *parser.VectorSelector:
		if prometheusSynthetic[n.Name] {
			return targetLabels
		}
		l, _ := labelsOf(n.Name)
		return l
	}
	return nil
}

var legendLabelRe = regexp.MustCompile(`\{\{\s*(?:\$labels\.)?([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// referencedLabels finds {{label}} (Grafana legends) and {{ $labels.x }}
// (alert templates).
func referencedLabels(text string) []string {
	var out []string
	for _, m := range legendLabelRe.FindAllStringSubmatch(text, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestCryptoReviewNamesRealTests keeps docs/crypto-review.md's coverage list
// honest: every Test/Fuzz name it lists must be defined in the _test.go file
// named before it.
func TestCryptoReviewNamesRealTests(t *testing.T) {
	doc := string(readFile(t, "../../docs/crypto-review.md"))
	items := regexp.MustCompile("`([A-Za-z0-9_./]+)`").FindAllStringSubmatch(doc, -1)
	testName := regexp.MustCompile(`^(Test|Fuzz)[A-Z0-9]\w*$`)
	file, n := "", 0
	for _, m := range items {
		switch {
		case strings.HasSuffix(m[1], "_test.go"):
			file = m[1]
		case testName.MatchString(m[1]):
			if file == "" {
				t.Errorf("%s is listed before any test file", m[1])
				continue
			}
			src, err := os.ReadFile("../../" + file)
			if err != nil {
				t.Errorf("%s: %v", file, err)
				continue
			}
			if !regexp.MustCompile(`(?m)^func ` + m[1] + `\(`).Match(src) {
				t.Errorf("docs/crypto-review.md lists %s in %s, which does not define it", m[1], file)
			}
			n++
		}
	}
	if n < 40 {
		t.Fatalf("only %d test names found in docs/crypto-review.md", n)
	}
}
