package compose_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshd/meshd/internal/opstools"
)

const chartDir = "helm/meshd"

// kubeVersion is the cluster version the chart is rendered for (helm's
// built-in default, v1.20, is below the chart's kubeVersion).
const kubeVersion = "1.31.0"

// renderChart runs the real helm (lint --strict, then template) with the
// values files given and decodes every rendered object strictly into its
// k8s.io/api type.
func renderChart(t *testing.T, valuesFiles ...string) manifests {
	t.Helper()
	helm := opstools.Find(t, "helm")
	args := []string{"--kube-version", kubeVersion}
	for _, f := range valuesFiles {
		args = append(args, "-f", filepath.Join(chartDir, f))
	}
	t.Log(strings.TrimSpace(opstools.Run(t, ".", helm, append([]string{"lint", "--strict", chartDir}, args...)...)))
	out := opstools.Run(t, ".", helm, append([]string{"template", "rel", chartDir, "--namespace", "mesh"}, args...)...)
	var m manifests
	m.files = map[string][]string{}
	m.decodeAll(t, "helm template "+strings.Join(valuesFiles, " "), "rendered", []byte(out))
	m.external = map[string]bool{}
	var values struct {
		ExistingSecret struct {
			Name string `json:"name"`
		} `json:"existingSecret"`
	}
	for _, f := range append([]string{"values.yaml"}, valuesFiles...) {
		raw, err := os.ReadFile(filepath.Join(chartDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, &values); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	m.external[values.ExistingSecret.Name] = true
	if len(m.files["rendered"]) < 5 {
		t.Fatalf("helm rendered only %v", m.files["rendered"])
	}
	return m
}

func TestHelmChartDefaults(t *testing.T) {
	m := renderChart(t)
	checkHPADeployment(t, m)
	checkHelmCommon(t, m)
	if len(m.ingresses)+len(m.monitors)+len(m.secrets) != 0 {
		t.Errorf("defaults render an Ingress, ServiceMonitor or Secret: %v", m.files)
	}
}

func TestHelmChartAllEnabled(t *testing.T) {
	m := renderChart(t, "ci/all-enabled-values.yaml")
	checkHPADeployment(t, m)
	checkHelmCommon(t, m)
	d := one(t, "Deployment", m.deployments)
	svc := one(t, "Service", m.services)
	ing := one(t, "Ingress", m.ingresses)
	checkIngress(t, svc, ing)
	checkNginxAnnotations(t, ing.Annotations)
	checkServiceMonitor(t, svc, one(t, "ServiceMonitor", m.monitors))
	c := d.Spec.Template.Spec.Containers[0]
	if !strings.Contains(c.Image, "@sha256:") {
		t.Errorf("image %s: the digest value is not used", c.Image)
	}
	var natsFromSecret bool
	for _, e := range c.Env {
		natsFromSecret = natsFromSecret || (e.Name == "NATS_URL" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "prod-meshd")
	}
	if cm := one(t, "ConfigMap", m.configMaps); !natsFromSecret || cm.Data["NATS_URL"] != "" {
		t.Errorf("existingSecret.natsUrlKey: NATS_URL must come from the Secret only (env %v, ConfigMap %q)", c.Env, cm.Data["NATS_URL"])
	}
	// METRICS_ADDR ":9464": the pod and the Service name the port, and the
	// ServiceMonitor scrapes it instead of the public one.
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "metrics" && p.ContainerPort == 9464 }) {
		t.Errorf("container ports %v: no metrics port 9464 for METRICS_ADDR", c.Ports)
	}
	if sm := one(t, "ServiceMonitor", m.monitors); len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want the metrics port", sm.Spec.Endpoints)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
		return p.Name == "metrics" && p.Port == 9464 && p.TargetPort.StrVal == "metrics"
	}) {
		t.Errorf("Service ports %v: no metrics port", svc.Spec.Ports)
	}
}

func TestHelmChartTraefikFixedReplicas(t *testing.T) {
	m := renderChart(t, "ci/traefik-values.yaml")
	d := one(t, "Deployment", m.deployments)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3 (autoscaling off)", d.Spec.Replicas)
	}
	checkDeployment(t, m, d)
	checkServicePDBHPA(t, m, false)
	if len(m.hpas)+len(m.jobs) != 0 {
		t.Errorf("HPA or migrate Job rendered while disabled: %v", m.files)
	}
	if cm := one(t, "ConfigMap", m.configMaps); cm.Data["BROKER_SKIP_MIGRATE"] != "" {
		t.Error("without the migrate Job the replicas must migrate at start")
	}
	svc := one(t, "Service", m.services)
	ing := one(t, "Ingress", m.ingresses)
	checkIngress(t, svc, ing)
	checkTraefikAnnotations(t, svc.Annotations)
}

// checkHelmCommon: the migrate Job (when rendered) uses the Deployment's
// image and env rules, and replicas skip migrating exactly when it runs.
func checkHelmCommon(t *testing.T, m manifests) {
	t.Helper()
	d := one(t, "Deployment", m.deployments)
	job := one(t, "Job", m.jobs)
	c := one(t, "container", job.Spec.Template.Spec.Containers)
	if !slices.Equal(c.Args, []string{"migrate"}) || c.Image != d.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("migrate Job %v %s", c.Args, c.Image)
	}
	if job.Annotations["helm.sh/hook"] == "" {
		t.Error("the migrate Job must be a pre-install/pre-upgrade hook")
	}
	checkPodEnv(t, m, "Job", c)
	if cm := one(t, "ConfigMap", m.configMaps); cm.Data["BROKER_SKIP_MIGRATE"] != "1" {
		t.Error("with the migrate Job the replicas must set BROKER_SKIP_MIGRATE=1")
	}
}

// values.yaml's env lists every variable of docs/env-vars.md an operator
// sets (DATABASE_URL comes from existingSecret, MESHD_NODE_ID from the pod
// name), so a newly documented variable is not forgotten in the chart.
func TestHelmValuesCoverEnvDoc(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Env map[string]any `json:"env"`
	}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	checkEnvDocumented(t, "values.yaml env", sortedKeys(values.Env))
	for name := range documentedEnv(t) {
		if _, ok := values.Env[name]; !ok && name != "DATABASE_URL" && name != "MESHD_NODE_ID" {
			t.Errorf("values.yaml env lacks %s (docs/env-vars.md)", name)
		}
	}
	if !regexp.MustCompile(`(?m)^existingSecret:\n\s+name: `).Match(raw) {
		t.Error("values.yaml has no existingSecret.name")
	}
}
