package compose_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const k8sDir = "kubernetes"

// shutdownDrain is how long meshd may take to drain after SIGTERM
// (cmd/meshd shutdownBudget).
const shutdownDrain = 10

// serviceMonitor is the subset of monitoring.coreos.com/v1 ServiceMonitor
// used here (the CRD's Go types are not in k8s.io/api); decoded strictly,
// so an unknown or misspelt field fails.
type serviceMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		JobLabel string `json:"jobLabel"`
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources []string `json:"resources"`
}

// manifests holds every decoded object.
type manifests struct {
	deployments []appsv1.Deployment
	services    []corev1.Service
	configMaps  []corev1.ConfigMap
	secrets     []corev1.Secret
	pdbs        []policyv1.PodDisruptionBudget
	hpas        []autoscalingv2.HorizontalPodAutoscaler
	jobs        []batchv1.Job
	monitors    []serviceMonitor
	kustomize   []kustomization
	files       map[string][]string // file → kinds
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// loadManifests decodes every document of every *.yaml in kubernetes/
// strictly into its real API type, chosen by apiVersion and kind.
func loadManifests(t *testing.T) manifests {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(k8sDir, "*.y*ml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := manifests{files: map[string][]string{}}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range docSep.Split(string(raw), -1) {
			if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
				continue
			}
			kind := m.decode(t, p, []byte(doc))
			m.files[filepath.Base(p)] = append(m.files[filepath.Base(p)], kind)
		}
	}
	return m
}

func strict(t *testing.T, path string, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func (m *manifests) decode(t *testing.T, path string, doc []byte) string {
	t.Helper()
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		var o appsv1.Deployment
		strict(t, path, doc, &o)
		m.deployments = append(m.deployments, o)
	case "v1 Service":
		var o corev1.Service
		strict(t, path, doc, &o)
		m.services = append(m.services, o)
	case "v1 ConfigMap":
		var o corev1.ConfigMap
		strict(t, path, doc, &o)
		m.configMaps = append(m.configMaps, o)
	case "v1 Secret":
		var o corev1.Secret
		strict(t, path, doc, &o)
		m.secrets = append(m.secrets, o)
	case "policy/v1 PodDisruptionBudget":
		var o policyv1.PodDisruptionBudget
		strict(t, path, doc, &o)
		m.pdbs = append(m.pdbs, o)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		var o autoscalingv2.HorizontalPodAutoscaler
		strict(t, path, doc, &o)
		m.hpas = append(m.hpas, o)
	case "batch/v1 Job":
		var o batchv1.Job
		strict(t, path, doc, &o)
		m.jobs = append(m.jobs, o)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		var o serviceMonitor
		strict(t, path, doc, &o)
		m.monitors = append(m.monitors, o)
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		var o kustomization
		strict(t, path, doc, &o)
		m.kustomize = append(m.kustomize, o)
	default:
		t.Fatalf("%s: unexpected %s %s", path, tm.APIVersion, tm.Kind)
	}
	return tm.Kind
}

func one[T any](t *testing.T, what string, xs []T) T {
	t.Helper()
	if len(xs) != 1 {
		t.Fatalf("want exactly one %s, have %d", what, len(xs))
	}
	return xs[0]
}

// A typo in a field name must fail the decode.
func TestKubernetesStrictDecodeRejectsTypos(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(k8sDir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(raw, []byte("readinessProbe:"), []byte("readynessProbe:"), 1)
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(bad, &d); err == nil || !strings.Contains(err.Error(), "readynessProbe") {
		t.Fatalf("misspelt field accepted: %v", err)
	}
}

func TestKubernetesDeployment(t *testing.T) {
	m := loadManifests(t)
	d := one(t, "Deployment", m.deployments)
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v, want ≥ 2", d.Spec.Replicas)
	}
	if ml := d.Spec.Selector.MatchLabels; len(ml) == 0 || !labels.SelectorFromSet(ml).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Fatalf("selector %v does not match the pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	c := one(t, "container", pod.Containers)
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == 7900 && p.Name == "http" }) {
		t.Errorf("container ports %v: want 7900 named http", c.Ports)
	}
	probe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || !portIs7900(p.HTTPGet.Port, c) {
			t.Errorf("%s probe %+v, want GET %s on 7900", what, p, path)
		}
	}
	probe("readiness", c.ReadinessProbe, "/health/ready")
	probe("liveness", c.LivenessProbe, "/health")
	if c.StartupProbe != nil {
		probe("startup", c.StartupProbe, "/health")
	}
	pre := c.Lifecycle
	if pre == nil || pre.PreStop == nil {
		t.Fatal("no preStop hook")
	}
	sleep := int64(0)
	switch {
	case pre.PreStop.Sleep != nil:
		sleep = pre.PreStop.Sleep.Seconds
	case pre.PreStop.Exec != nil && len(pre.PreStop.Exec.Command) == 2 && pre.PreStop.Exec.Command[0] == "sleep":
		sleep, _ = strconv.ParseInt(pre.PreStop.Exec.Command[1], 10, 64)
	}
	if sleep < 5 {
		t.Errorf("preStop %+v: want a sleep of at least 5 s so endpoints are removed before the drain", pre.PreStop)
	}
	grace := pod.TerminationGracePeriodSeconds
	if grace == nil || *grace < 30 || *grace < sleep+shutdownDrain+5 {
		t.Errorf("terminationGracePeriodSeconds %v: want ≥ 30 and ≥ preStop %d s + drain %d s + margin", grace, sleep, shutdownDrain)
	}
	r := c.Resources
	if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu/memory requests and a memory limit", r)
	}
	nonRoot := func(sc *corev1.PodSecurityContext) bool {
		return sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot
	}
	if !nonRoot(pod.SecurityContext) && (c.SecurityContext == nil || c.SecurityContext.RunAsNonRoot == nil || !*c.SecurityContext.RunAsNonRoot) {
		t.Error("pod must run as non-root")
	}
	if csc := c.SecurityContext; csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("container must set allowPrivilegeEscalation: false")
	}
	checkPodEnv(t, m, "Deployment", c)
	var nodeID bool
	for _, e := range c.Env {
		nodeID = nodeID || (e.Name == "MESHD_NODE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name")
	}
	if !nodeID {
		t.Error("MESHD_NODE_ID must come from the pod name (unique per replica)")
	}
	if !slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool { return e.SecretRef != nil }) ||
		!slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool { return e.ConfigMapRef != nil }) {
		t.Error("env must come from both the ConfigMap and the Secret")
	}
}

func portIs7900(p intstr.IntOrString, c corev1.Container) bool {
	if p.Type == intstr.Int {
		return p.IntVal == 7900
	}
	return slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.StrVal && cp.ContainerPort == 7900 })
}

// checkPodEnv: every variable a container gets is one meshd documents, and
// envFrom references exist.
func checkPodEnv(t *testing.T, m manifests, where string, c corev1.Container) {
	t.Helper()
	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm := findByName(t, m.configMaps, ef.ConfigMapRef.Name, func(o corev1.ConfigMap) string { return o.Name })
			names = append(names, sortedKeys(cm.Data)...)
		case ef.SecretRef != nil:
			s := findByName(t, m.secrets, ef.SecretRef.Name, func(o corev1.Secret) string { return o.Name })
			names = append(names, sortedKeys(s.StringData)...)
			names = append(names, sortedKeys(s.Data)...)
		}
	}
	checkEnvDocumented(t, where+" "+c.Name, names)
}

func findByName[T any](t *testing.T, xs []T, name string, nameOf func(T) string) T {
	t.Helper()
	for _, x := range xs {
		if nameOf(x) == name {
			return x
		}
	}
	t.Fatalf("%s is referenced but not defined", name)
	var zero T
	return zero
}

func TestKubernetesConfigAndSecret(t *testing.T) {
	m := loadManifests(t)
	cm := one(t, "ConfigMap", m.configMaps)
	checkEnvDocumented(t, "ConfigMap "+cm.Name, sortedKeys(cm.Data))
	if cm.Data["NATS_URL"] == "" {
		t.Error("ConfigMap must set NATS_URL: replicas only see each other through a shared NATS")
	}
	s := one(t, "Secret", m.secrets)
	checkEnvDocumented(t, "Secret "+s.Name, sortedKeys(s.StringData))
	if !strings.Contains(s.StringData["DATABASE_URL"], "CHANGE_ME") {
		t.Error("the committed Secret must hold a placeholder DATABASE_URL")
	}
	if _, ok := cm.Data["DATABASE_URL"]; ok {
		t.Error("DATABASE_URL carries a password: keep it in the Secret")
	}
}

func TestKubernetesServicePDBHPA(t *testing.T) {
	m := loadManifests(t)
	d := one(t, "Deployment", m.deployments)
	podLabels := labels.Set(d.Spec.Template.Labels)
	svc := one(t, "Service", m.services)
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not select the pods", svc.Spec.Selector)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return portIs7900(p.TargetPort, c) }) {
		t.Errorf("Service ports %v do not reach the container's 7900", svc.Spec.Ports)
	}

	pdb := one(t, "PodDisruptionBudget", m.pdbs)
	if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.Type != intstr.Int || mu.IntVal != 1 || pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB maxUnavailable %v minAvailable %v, want maxUnavailable: 1", mu, pdb.Spec.MinAvailable)
	}
	if pdb.Spec.Selector == nil || !labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(podLabels) {
		t.Error("PDB selector does not select the pods")
	}

	hpa := one(t, "HorizontalPodAutoscaler", m.hpas)
	ref := hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, want Deployment %s", ref, d.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas || len(hpa.Spec.Metrics) == 0 {
		t.Errorf("HPA min %v max %d metrics %d: want min ≥ 2 ≤ max and a metric", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas, len(hpa.Spec.Metrics))
	}
}

func TestKubernetesServiceMonitor(t *testing.T) {
	m := loadManifests(t)
	svc := one(t, "Service", m.services)
	sm := one(t, "ServiceMonitor", m.monitors)
	sel := sm.Spec.Selector.MatchLabels
	if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(labels.Set(svc.Labels)) {
		t.Errorf("ServiceMonitor selector %v does not select Service labels %v", sel, svc.Labels)
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Fatal("ServiceMonitor has no endpoints")
	}
	for _, ep := range sm.Spec.Endpoints {
		if ep.Path != "/metrics" || !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
			t.Errorf("endpoint %+v: want /metrics on a named Service port", ep)
		}
	}
	// alerts.yml's MeshdReplicaDown matches up{job="meshd"}: with jobLabel
	// the job is the value of that Service label.
	if sm.Spec.JobLabel != "" && svc.Labels[sm.Spec.JobLabel] != "meshd" {
		t.Errorf("scrape job would be %q, alerts.yml expects meshd", svc.Labels[sm.Spec.JobLabel])
	}
}

func TestKubernetesMigrateJob(t *testing.T) {
	m := loadManifests(t)
	job := one(t, "Job", m.jobs)
	c := one(t, "container", job.Spec.Template.Spec.Containers)
	if !slices.Equal(c.Args, []string{"migrate"}) {
		t.Errorf("migrate Job args %v", c.Args)
	}
	if dc := one(t, "Deployment", m.deployments).Spec.Template.Spec.Containers[0]; dc.Image != c.Image {
		t.Errorf("Job image %s differs from the Deployment's %s", c.Image, dc.Image)
	}
	checkPodEnv(t, m, "Job", c)
}

// kustomization.yaml lists every manifest except the ones applied on their
// own.
func TestKubernetesKustomization(t *testing.T) {
	m := loadManifests(t)
	k := one(t, "Kustomization", m.kustomize)
	standalone := map[string]bool{"kustomization.yaml": true, "migrate-job.yaml": true}
	for _, r := range k.Resources {
		if _, ok := m.files[r]; !ok {
			t.Errorf("kustomization lists %s, which does not exist", r)
		}
	}
	for f := range m.files {
		if !standalone[f] && !slices.Contains(k.Resources, f) {
			t.Errorf("%s is not in kustomization.yaml", f)
		}
	}
	if _, err := os.Stat(filepath.Join(k8sDir, "README.md")); err != nil {
		t.Error(err)
	}
}
