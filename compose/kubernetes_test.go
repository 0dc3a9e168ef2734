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

	"github.com/meshd/meshd/internal/opstools"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const k8sDir = "kubernetes"

// baseDir holds what `kubectl apply -k` always applies; components/ holds
// the optional parts.
var baseDir = filepath.Join(k8sDir, "base")

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

// kustomization is a Kustomization or a Component (the fields used here).
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources  []string `json:"resources"`
	Components []string `json:"components"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches"`
	Images []struct {
		Name   string `json:"name"`
		NewTag string `json:"newTag"`
	} `json:"images"`
	dir string
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
	ingresses   []networkingv1.Ingress
	monitors    []serviceMonitor
	kustomize   []kustomization
	files       map[string][]string // file → kinds
	external    map[string]bool     // Secrets created out of band
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// loadManifests decodes every document of every *.yaml under dir (all of
// kubernetes/ when dir is k8sDir) strictly into its real API type, chosen
// by apiVersion and kind. files is keyed by the path below dir.
func loadManifests(t *testing.T, dir string) manifests {
	t.Helper()
	m := manifests{files: map[string][]string{}}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".yaml") {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m.decodeAll(t, p, rel, raw)
		return nil
	})
	if err != nil || len(m.files) == 0 {
		t.Fatalf("no manifests under %s: %v", dir, err)
	}
	return m
}

var commentLine = regexp.MustCompile(`(?m)^\s*#.*$`)

// decodeAll decodes each document of a multi-document YAML file.
func (m *manifests) decodeAll(t *testing.T, path, key string, raw []byte) {
	t.Helper()
	for _, doc := range docSep.Split(string(raw), -1) {
		if strings.TrimSpace(commentLine.ReplaceAllString(doc, "")) == "" {
			continue
		}
		kind := m.decode(t, path, []byte(doc))
		m.files[key] = append(m.files[key], kind)
	}
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
		add(t, path, doc, &m.deployments)
	case "v1 Service":
		add(t, path, doc, &m.services)
	case "v1 ConfigMap":
		add(t, path, doc, &m.configMaps)
	case "v1 Secret":
		add(t, path, doc, &m.secrets)
	case "policy/v1 PodDisruptionBudget":
		add(t, path, doc, &m.pdbs)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		add(t, path, doc, &m.hpas)
	case "batch/v1 Job":
		add(t, path, doc, &m.jobs)
	case "networking.k8s.io/v1 Ingress":
		add(t, path, doc, &m.ingresses)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		add(t, path, doc, &m.monitors)
	case "kustomize.config.k8s.io/v1beta1 Kustomization", "kustomize.config.k8s.io/v1alpha1 Component":
		var o kustomization
		strict(t, path, doc, &o)
		o.dir = filepath.Dir(path)
		m.kustomize = append(m.kustomize, o)
	default:
		t.Fatalf("%s: unexpected %s %s", path, tm.APIVersion, tm.Kind)
	}
	return tm.Kind
}

// add decodes doc strictly into a new T and appends it to xs.
func add[T any](t *testing.T, path string, doc []byte, xs *[]T) {
	t.Helper()
	var o T
	strict(t, path, doc, &o)
	*xs = append(*xs, o)
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
	raw, err := os.ReadFile(filepath.Join(baseDir, "deployment.yaml"))
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
	checkHPADeployment(t, loadBase(t))
}

// checkHPADeployment checks the Deployment of a set with an HPA: the HPA
// owns the replica count, so the Deployment must not set one.
func checkHPADeployment(t *testing.T, m manifests) {
	t.Helper()
	d := one(t, "Deployment", m.deployments)
	if d.Spec.Replicas != nil {
		t.Errorf("replicas %d set beside the HPA, which owns the count", *d.Spec.Replicas)
	}
	checkDeployment(t, m, d)
	checkServicePDBHPA(t, m, true)
}

// checkDeployment checks a meshd Deployment (kustomize base or Helm).
func checkDeployment(t *testing.T, m manifests, d appsv1.Deployment) {
	t.Helper()
	pod := d.Spec.Template.Spec
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
	secretDB := slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool { return e.SecretRef != nil }) ||
		slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
			return e.Name == "DATABASE_URL" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		})
	if !secretDB || !slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool { return e.ConfigMapRef != nil }) {
		t.Error("env must come from the ConfigMap, and DATABASE_URL from a Secret")
	}
}

func portIs7900(p intstr.IntOrString, c corev1.Container) bool {
	if p.Type == intstr.Int {
		return p.IntVal == 7900
	}
	return slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.StrVal && cp.ContainerPort == 7900 })
}

// checkPodEnv: every variable a container gets is one meshd documents, and
// envFrom references exist (or name a Secret created out of band).
func checkPodEnv(t *testing.T, m manifests, where string, c corev1.Container) {
	t.Helper()
	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
		if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && !m.external[r.SecretKeyRef.Name] {
			findByName(t, m.secrets, r.SecretKeyRef.Name, func(o corev1.Secret) string { return o.Name })
		}
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm := findByName(t, m.configMaps, ef.ConfigMapRef.Name, func(o corev1.ConfigMap) string { return o.Name })
			names = append(names, sortedKeys(cm.Data)...)
		case ef.SecretRef != nil && m.external[ef.SecretRef.Name]:
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

// loadBase loads the base; meshd-secrets is created by the operator.
func loadBase(t *testing.T) manifests {
	t.Helper()
	m := loadManifests(t, baseDir)
	m.external = map[string]bool{secretName: true}
	return m
}

// secretName is the Secret the base reads DATABASE_URL from.
const secretName = "meshd-secrets"

func TestKubernetesConfigAndSecret(t *testing.T) {
	m := loadBase(t)
	cm := one(t, "ConfigMap", m.configMaps)
	checkEnvDocumented(t, "ConfigMap "+cm.Name, sortedKeys(cm.Data))
	if cm.Data["NATS_URL"] == "" {
		t.Error("ConfigMap must set NATS_URL: replicas only see each other through a shared NATS")
	}
	if _, ok := cm.Data["DATABASE_URL"]; ok {
		t.Error("DATABASE_URL carries a password: keep it in the Secret")
	}
	// The base must not carry a Secret (kubectl apply -k would overwrite the
	// operator's real one with a placeholder); the dev-secret component
	// does, with the name the base reads.
	if len(m.secrets) != 0 {
		t.Errorf("the base defines Secrets %v", m.secrets)
	}
	dev := loadManifests(t, filepath.Join(k8sDir, "components", "dev-secret"))
	s := one(t, "Secret", dev.secrets)
	checkEnvDocumented(t, "Secret "+s.Name, sortedKeys(s.StringData))
	if s.Name != secretName || !strings.Contains(s.StringData["DATABASE_URL"], "CHANGE_ME") {
		t.Errorf("dev-secret: %s with DATABASE_URL %q, want %s holding a placeholder", s.Name, s.StringData["DATABASE_URL"], secretName)
	}
}

// checkServicePDBHPA checks the Service, the PDB and (when hpa) the HPA
// against the Deployment.
func checkServicePDBHPA(t *testing.T, m manifests, hpa bool) {
	t.Helper()
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
	if !hpa {
		return
	}
	h := one(t, "HorizontalPodAutoscaler", m.hpas)
	ref := h.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, want Deployment %s", ref, d.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas || len(h.Spec.Metrics) == 0 {
		t.Errorf("HPA min %v max %d metrics %d: want min ≥ 2 ≤ max and a metric", h.Spec.MinReplicas, h.Spec.MaxReplicas, len(h.Spec.Metrics))
	}
}

func TestKubernetesServiceMonitor(t *testing.T) {
	svc := one(t, "Service", loadBase(t).services)
	sm := one(t, "ServiceMonitor", loadManifests(t, filepath.Join(k8sDir, "components", "servicemonitor")).monitors)
	checkServiceMonitor(t, svc, sm)
}

func checkServiceMonitor(t *testing.T, svc corev1.Service, sm serviceMonitor) {
	t.Helper()
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

// The Ingress examples route / (WebSocket and HTTP) to the Service's port,
// keep idle WebSockets open past meshd's 30 s ping, and set a sticky cookie.
func TestKubernetesIngress(t *testing.T) {
	svc := one(t, "Service", loadBase(t).services)
	nginx := one(t, "Ingress", loadManifests(t, filepath.Join(k8sDir, "components", "ingress-nginx")).ingresses)
	checkIngress(t, svc, nginx)
	checkNginxAnnotations(t, nginx.Annotations)

	tr := loadManifests(t, filepath.Join(k8sDir, "components", "ingress-traefik"))
	checkIngress(t, svc, one(t, "Ingress", tr.ingresses))
	patch := one(t, "Service patch", tr.services)
	if patch.Name != svc.Name {
		t.Errorf("Traefik patch targets Service %q, want %q", patch.Name, svc.Name)
	}
	checkTraefikAnnotations(t, patch.Annotations)
}

func checkIngress(t *testing.T, svc corev1.Service, ing networkingv1.Ingress) {
	t.Helper()
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName == "" || len(ing.Spec.TLS) == 0 {
		t.Errorf("Ingress %s: want an ingressClassName and TLS (BROKER_URL is wss://)", ing.Name)
	}
	var root bool
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			b := p.Backend.Service
			if b == nil || b.Name != svc.Name || !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
				return (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
			}) {
				t.Errorf("Ingress %s path %s: backend %+v is not a port of Service %s", ing.Name, p.Path, b, svc.Name)
			}
			root = root || (p.Path == "/" && p.PathType != nil && *p.PathType == networkingv1.PathTypePrefix)
		}
	}
	if !root {
		t.Errorf("Ingress %s: /ws and HTTP must share one host: want path / (Prefix)", ing.Name)
	}
}

func checkNginxAnnotations(t *testing.T, a map[string]string) {
	t.Helper()
	const p = "nginx.ingress.kubernetes.io/"
	for _, k := range []string{"proxy-read-timeout", "proxy-send-timeout"} {
		if n, err := strconv.Atoi(a[p+k]); err != nil || n < 60 {
			t.Errorf("%s%s = %q: want ≥ 60 s (meshd pings every 30 s)", p, k, a[p+k])
		}
	}
	if a[p+"affinity"] != "cookie" || a[p+"session-cookie-name"] == "" {
		t.Errorf("ingress-nginx sticky cookie not set: %v", a)
	}
}

func checkTraefikAnnotations(t *testing.T, a map[string]string) {
	t.Helper()
	const p = "traefik.ingress.kubernetes.io/service.sticky.cookie"
	if a[p] != "true" || a[p+".name"] == "" {
		t.Errorf("Traefik sticky cookie not set on the Service: %v", a)
	}
}

func TestKubernetesMigrateJob(t *testing.T) {
	m := loadBase(t)
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

// Every file under kubernetes/ decodes strictly (loadManifests); every
// kustomization names files that exist, each component lists all its
// files, and the base lists every manifest except the ones applied on
// their own — and nothing that needs a CRD or overwrites a Secret.
func TestKubernetesKustomization(t *testing.T) {
	all := loadManifests(t, k8sDir)
	if len(all.kustomize) < 6 {
		t.Fatalf("%d kustomizations, want base, 4 components and an overlay", len(all.kustomize))
	}
	for _, k := range all.kustomize {
		refs := slices.Clone(k.Resources)
		refs = append(refs, k.Components...)
		for _, p := range k.Patches {
			refs = append(refs, p.Path)
		}
		for _, r := range refs {
			if _, err := os.Stat(filepath.Join(k.dir, r)); err != nil {
				t.Errorf("%s lists %s: %v", k.dir, r, err)
			}
		}
		if k.Kind == "Component" {
			entries, _ := os.ReadDir(k.dir)
			for _, e := range entries {
				if e.Name() != "kustomization.yaml" && !slices.Contains(refs, e.Name()) {
					t.Errorf("%s: %s is not listed", k.dir, e.Name())
				}
			}
		}
	}
	base := loadBase(t)
	k := one(t, "base Kustomization", base.kustomize)
	standalone := map[string]bool{"kustomization.yaml": true, "migrate-job.yaml": true}
	for f := range base.files {
		if !standalone[f] && !slices.Contains(k.Resources, f) {
			t.Errorf("base/%s is not in base/kustomization.yaml", f)
		}
	}
	if len(base.monitors) != 0 || len(base.secrets) != 0 {
		t.Error("the base must not need prometheus-operator nor carry a Secret")
	}
	if _, err := os.Stat(filepath.Join(k8sDir, "README.md")); err != nil {
		t.Error(err)
	}
}

// kustomizeBuild runs the real `kustomize build` on dir — what `kubectl
// apply -k` would apply — and decodes every object strictly into its API
// type.
func kustomizeBuild(t *testing.T, dir string) manifests {
	t.Helper()
	kz := opstools.Find(t, "kustomize")
	out := opstools.Run(t, ".", kz, "build", dir)
	m := manifests{files: map[string][]string{}, external: map[string]bool{secretName: true}}
	m.decodeAll(t, "kustomize build "+dir, "rendered", []byte(out))
	if len(m.files["rendered"]) < 5 {
		t.Fatalf("kustomize build %s rendered only %v", dir, m.files["rendered"])
	}
	return m
}

// The base, the example overlay and the base with the other components,
// built by the real kustomize: each builds, decodes strictly, and wires
// together (selectors, ports, HPA ownership, the overlay's image).
func TestKustomizeBuild(t *testing.T) {
	base := kustomizeBuild(t, baseDir)
	checkHPADeployment(t, base)
	if len(base.secrets)+len(base.monitors)+len(base.ingresses) != 0 {
		t.Errorf("the base renders a Secret, ServiceMonitor or Ingress: %v", base.files)
	}

	ex := kustomizeBuild(t, filepath.Join(k8sDir, "overlays", "example"))
	checkHPADeployment(t, ex)
	svc := one(t, "Service", ex.services)
	checkServiceMonitor(t, svc, one(t, "ServiceMonitor", ex.monitors))
	ing := one(t, "Ingress", ex.ingresses)
	checkIngress(t, svc, ing)
	checkNginxAnnotations(t, ing.Annotations)
	if img := one(t, "Deployment", ex.deployments).Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/meshd/meshd:0.1.0" {
		t.Errorf("overlay image %q: the images: override did not apply", img)
	}
	if len(ex.secrets) != 0 {
		t.Error("the example overlay must not carry a Secret")
	}

	// The components the example leaves out: Traefik (its Service patch
	// must merge into the base's Service) and the throwaway Secret.
	k8s, err := filepath.Abs(k8sDir)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if k8s, err = filepath.Rel(dir, k8s); err != nil { // kustomize refuses absolute roots
		t.Fatal(err)
	}
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + filepath.Join(k8s, "base") +
		"\ncomponents:\n  - " + filepath.Join(k8s, "components", "ingress-traefik") +
		"\n  - " + filepath.Join(k8s, "components", "dev-secret") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := kustomizeBuild(t, dir)
	checkHPADeployment(t, tr)
	trSvc := one(t, "Service", tr.services)
	checkTraefikAnnotations(t, trSvc.Annotations)
	checkIngress(t, trSvc, one(t, "Ingress", tr.ingresses))
	if s := one(t, "Secret", tr.secrets); s.Name != secretName {
		t.Errorf("dev-secret renders %s, the base reads %s", s.Name, secretName)
	}
}
