package dashboards_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/meshd/meshd/internal/opstools"
)

// ruleTests is the promtool unit-test file for alerts.yml.
const ruleTests = "alerts_test.yml"

// neverFiresInTests are alerts whose firing a promtool test cannot reach,
// with why; they still need a test that they stay silent.
var neverFiresInTests = map[string]string{
	// promtool evaluates from the Unix epoch; the sunset is 2026-05-15.
	"MeshdLegacyAuthAfterSunset": "time() starts at 0 in promtool",
}

// The real promtool checks the rules and runs their unit tests.
func TestPromtoolRules(t *testing.T) {
	promtool := opstools.Find(t, "promtool")
	out := opstools.Run(t, ".", promtool, "check", "rules", "alerts.yml")
	t.Log(out)
	if n := len(loadRules(t)); !strings.Contains(out, "SUCCESS: "+strconv.Itoa(n)+" rules found") {
		t.Errorf("promtool did not find the %d rules:\n%s", n, out)
	}
	t.Log(opstools.Run(t, ".", promtool, "test", "rules", ruleTests))
}

// Every alert has a unit test in which it fires (and one in which it does
// not), so a new alert cannot land untested.
func TestEveryAlertHasPromtoolTest(t *testing.T) {
	raw, err := os.ReadFile(ruleTests)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.RuleFiles) != 1 || f.RuleFiles[0] != "alerts.yml" {
		t.Fatalf("%s tests %v, want alerts.yml", ruleTests, f.RuleFiles)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, r := range loadRules(t) {
		if !silent[r.Alert] {
			t.Errorf("%s: no promtool test where it stays silent", r.Alert)
		}
		if _, exempt := neverFiresInTests[r.Alert]; !fires[r.Alert] && !exempt {
			t.Errorf("%s: no promtool test where it fires", r.Alert)
		}
	}
}
