package kubernetes

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// built is a kustomization's output, decoded into the API types.
type built struct {
	deployments []appsv1.Deployment
	services    []corev1.Service
	configMaps  []corev1.ConfigMap
	pdbs        []policyv1.PodDisruptionBudget
	namespaces  []corev1.Namespace
	podMonitors []podMonitor
	rules       []prometheusRule
	accounts    []corev1.ServiceAccount
	policies    []networkingv1.NetworkPolicy
	kinds       []string
}

// prometheusRule is a Prometheus Operator PrometheusRule
// (monitoring.coreos.com/v1); decoding rejects any field the CRD's schema
// does not have.
type prometheusRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name     string `json:"name"`
			Interval string `json:"interval,omitempty"`
			Rules    []struct {
				Alert       string            `json:"alert,omitempty"`
				Record      string            `json:"record,omitempty"`
				Expr        string            `json:"expr"`
				For         string            `json:"for,omitempty"`
				Labels      map[string]string `json:"labels,omitempty"`
				Annotations map[string]string `json:"annotations,omitempty"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// podMonitor is the part of a Prometheus Operator PodMonitor
// (monitoring.coreos.com/v1) the manifests use; decoding rejects any other
// field, as the CRD's schema would.
type podMonitor struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace,omitempty"`
		Labels    map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// build runs kustomize on dir and strict-decodes every resource: a field
// the API type does not have is an error.
func build(t *testing.T, dir string) built {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var b built
	for _, r := range resMap.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetGvk()
		kind := gvk.ApiVersion() + " " + gvk.Kind
		b.kinds = append(b.kinds, kind)
		strict := func(v any) {
			if err := yaml.UnmarshalStrict(y, v); err != nil {
				t.Errorf("%s: %s %s: %v", dir, kind, r.GetName(), err)
			}
		}
		switch kind {
		case "apps/v1 Deployment":
			var d appsv1.Deployment
			strict(&d)
			b.deployments = append(b.deployments, d)
		case "v1 Service":
			var s corev1.Service
			strict(&s)
			b.services = append(b.services, s)
		case "v1 ConfigMap":
			var c corev1.ConfigMap
			strict(&c)
			b.configMaps = append(b.configMaps, c)
		case "policy/v1 PodDisruptionBudget":
			var p policyv1.PodDisruptionBudget
			strict(&p)
			b.pdbs = append(b.pdbs, p)
		case "v1 Namespace":
			var n corev1.Namespace
			strict(&n)
			b.namespaces = append(b.namespaces, n)
		case "v1 ServiceAccount":
			var a corev1.ServiceAccount
			strict(&a)
			b.accounts = append(b.accounts, a)
		case "networking.k8s.io/v1 NetworkPolicy":
			var p networkingv1.NetworkPolicy
			strict(&p)
			b.policies = append(b.policies, p)
		case "monitoring.coreos.com/v1 PodMonitor":
			var pm podMonitor
			strictJSON(t, dir, y, &pm)
			b.podMonitors = append(b.podMonitors, pm)
		case "monitoring.coreos.com/v1 PrometheusRule":
			var pr prometheusRule
			strictJSON(t, dir, y, &pr)
			b.rules = append(b.rules, pr)
		default:
			t.Errorf("%s: %s %s: a kind this test does not check", dir, kind, r.GetName())
		}
	}
	return b
}

// strictJSON decodes a custom resource, refusing unknown fields.
func strictJSON(t *testing.T, dir string, y []byte, v any) {
	t.Helper()
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Errorf("%s: %T: %v", dir, v, err)
	}
}

// binaryEnv returns the environment variables the reconciler reads,
// collected from its source: a manifest that sets any other variable sets
// it for nothing.
func binaryEnv(t *testing.T) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob("../../cmd/reconciler/*.go")
	more, _ := filepath.Glob("../../internal/natsconn/*.go")
	files = append(files, more...)
	re := regexp.MustCompile(`"((?:RECONCILER|CLOUDFLARE|NATS)_[A-Z_]+)"`)
	names := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
	}
	if len(names) < 10 {
		t.Fatalf("found only %d variables in cmd/reconciler; has it moved?", len(names))
	}
	return names
}

func TestBaseAndExampleOverlay(t *testing.T) {
	knownEnv := binaryEnv(t)
	for _, dir := range []string{"base", "overlays/example"} {
		t.Run(dir, func(t *testing.T) {
			b := build(t, dir)
			checkWorkload(t, b, knownEnv)
			if dir == "overlays/example" {
				if len(b.namespaces) != 1 || b.namespaces[0].Name != "reconciler" {
					t.Errorf("the example creates namespaces %v, want [reconciler]", b.namespaces)
				}
				for _, d := range b.deployments {
					if d.Namespace != "reconciler" {
						t.Errorf("deployment in namespace %q", d.Namespace)
					}
					if img := d.Spec.Template.Spec.Containers[0].Image; img == "reconciler" {
						t.Errorf("the example does not set the image (still %q)", img)
					}
				}
			}
		})
	}
}

// checkWorkload checks the Deployment and what refers to it.
func checkWorkload(t *testing.T, b built, knownEnv map[string]bool) {
	t.Helper()
	if len(b.deployments) != 1 || len(b.services) != 1 || len(b.pdbs) != 1 || len(b.podMonitors) != 1 || len(b.configMaps) != 2 ||
		len(b.rules) != 1 || len(b.accounts) != 1 || len(b.policies) != 1 {
		t.Fatalf("want one Deployment, Service, PodDisruptionBudget, PodMonitor, PrometheusRule, ServiceAccount, NetworkPolicy and two ConfigMaps (settings, dashboard); got %v", b.kinds)
	}
	var cm, dashboard corev1.ConfigMap
	for _, c := range b.configMaps {
		if c.Labels["grafana_dashboard"] == "1" {
			dashboard = c
		} else {
			cm = c
		}
	}
	checkDashboardConfigMap(t, dashboard)
	d := b.deployments[0]
	pod := d.Spec.Template.Spec
	podLabels := d.Spec.Template.Labels
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	if !selects(d.Spec.Selector.MatchLabels, podLabels) || len(d.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("the Deployment's selector %v does not select its pods %v", d.Spec.Selector.MatchLabels, podLabels)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken must be false: the reconciler never calls the Kubernetes API")
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the pod must set runAsNonRoot")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if !slices.Equal(c.Args, []string{"run"}) {
		t.Errorf("args %v, want [run]", c.Args)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("the container must have a read-only root filesystem and no privilege escalation")
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}

	// Probes on the metrics port.
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9464 || c.Ports[0].Name == "" {
		t.Fatalf("ports %+v, want one named port 9464", c.Ports)
	}
	port := c.Ports[0]
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path ||
			(p.HTTPGet.Port != intstr.FromString(port.Name) && p.HTTPGet.Port != intstr.FromInt32(port.ContainerPort)) {
			t.Errorf("%s probe %+v, want GET %s on port %s", name, p, path, port.Name)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")

	// Environment: known variables only; the token from a Secret, NATS
	// from the ConfigMap.
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	usesCM := false
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == cm.Name {
			usesCM = true
		}
	}
	if !usesCM {
		t.Errorf("the container does not take its environment from ConfigMap %s", cm.Name)
	}
	for name := range cm.Data {
		if !knownEnv[name] {
			t.Errorf("ConfigMap sets %s, which the reconciler does not read", name)
		}
	}
	for name := range env {
		if !knownEnv[name] {
			t.Errorf("the container sets %s, which the reconciler does not read", name)
		}
	}
	if tok := env["CLOUDFLARE_API_TOKEN"]; tok.Value != "" || tok.ValueFrom == nil || tok.ValueFrom.SecretKeyRef == nil {
		t.Errorf("CLOUDFLARE_API_TOKEN must come from a Secret, got %+v", tok)
	}
	if cm.Data["NATS_URL"] == "" {
		t.Error("the ConfigMap has no NATS_URL")
	}
	if _, ok := env["NATS_URL"]; ok {
		t.Error("NATS_URL must come from the ConfigMap, not the container's env")
	}
	checkSecrets(t, pod, c, cm, env)
	checkServiceAccount(t, b, pod)
	checkNetworkPolicy(t, b.policies[0], podLabels, port, cm.Data["NATS_URL"])
	checkPrometheusRule(t, b.rules[0], d.Namespace)
	if addr := env["RECONCILER_METRICS_ADDR"].Value; addr != ":"+strconv.Itoa(int(port.ContainerPort)) {
		t.Errorf("RECONCILER_METRICS_ADDR %q, want :%d (the probes' port)", addr, port.ContainerPort)
	}
	// The NATS definitions in deploy/nats are for 3 replicas.
	if r := cm.Data["RECONCILER_STREAM_REPLICAS"]; r != "3" {
		t.Errorf("RECONCILER_STREAM_REPLICAS %q, want 3 like deploy/nats", r)
	}
	if s := cm.Data["RECONCILER_SHUTDOWN_TIMEOUT"]; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Errorf("RECONCILER_SHUTDOWN_TIMEOUT %q: %v", s, err)
		} else if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= d {
			t.Errorf("terminationGracePeriodSeconds %v must exceed RECONCILER_SHUTDOWN_TIMEOUT %s", g, d)
		}
	}

	// What refers to the pods.
	svc := b.services[0]
	if !selects(svc.Spec.Selector, podLabels) || len(svc.Spec.Selector) == 0 {
		t.Errorf("Service %s selects %v, not the pods %v", svc.Name, svc.Spec.Selector, podLabels)
	}
	if len(svc.Spec.Ports) != 1 || (svc.Spec.Ports[0].TargetPort != intstr.FromString(port.Name) && svc.Spec.Ports[0].TargetPort.IntValue() != int(port.ContainerPort)) {
		t.Errorf("Service ports %+v do not reach the metrics port", svc.Spec.Ports)
	}
	pdb := b.pdbs[0]
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, podLabels) || len(pdb.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("PodDisruptionBudget selects %v, not the pods %v", pdb.Spec.Selector, podLabels)
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 || pdb.Spec.MinAvailable.IntValue() >= int(*d.Spec.Replicas) {
		t.Errorf("PodDisruptionBudget minAvailable %v, want at least 1 and below the replicas", pdb.Spec.MinAvailable)
	}
	pm := b.podMonitors[0]
	if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Kind != "PodMonitor" || pm.Metadata.Name == "" {
		t.Errorf("PodMonitor %s/%s named %q", pm.APIVersion, pm.Kind, pm.Metadata.Name)
	}
	if len(pm.Spec.Selector.MatchLabels) == 0 || !selects(pm.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("PodMonitor selects %v, not the pods %v", pm.Spec.Selector.MatchLabels, podLabels)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 || pm.Spec.PodMetricsEndpoints[0].Port != port.Name || pm.Spec.PodMetricsEndpoints[0].Path != "/metrics" {
		t.Errorf("PodMonitor endpoints %+v, want port %s path /metrics", pm.Spec.PodMetricsEndpoints, port.Name)
	}
	if ns := d.Namespace; pm.Metadata.Namespace != ns || svc.Namespace != ns || pdb.Namespace != ns || cm.Namespace != ns ||
		b.rules[0].Metadata.Namespace != ns || b.policies[0].Namespace != ns || b.accounts[0].Namespace != ns || dashboard.Namespace != ns {
		t.Errorf("resources in different namespaces: deployment %q, podmonitor %q, service %q, pdb %q, configmap %q",
			ns, pm.Metadata.Namespace, svc.Namespace, pdb.Namespace, cm.Namespace)
	}
}

// selects reports whether every label of sel is on labels.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestNACKKustomizationBuilds: the NACK resources in deploy/nats/nack
// build (their contents are compared with what run creates in package
// deploy).
func TestNACKKustomizationBuilds(t *testing.T) {
	abs, err := filepath.Abs("../nats/nack")
	if err != nil {
		t.Fatal(err)
	}
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build deploy/nats/nack: %v", err)
	}
	files, _ := filepath.Glob("../nats/nack/*.yaml")
	if got, want := resMap.Size(), len(files)-1; got != want {
		t.Errorf("%d resources built, want %d (one per file but kustomization.yaml)", got, want)
	}
	for _, r := range resMap.Resources() {
		if r.GetGvk().ApiVersion() != "jetstream.nats.io/v1beta2" {
			t.Errorf("%s %s: apiVersion %s", r.GetKind(), r.GetName(), r.GetGvk().ApiVersion())
		}
	}
}
