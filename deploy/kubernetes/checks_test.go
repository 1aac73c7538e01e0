package kubernetes

import (
	"encoding/json"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// secretNames are variables whose values are credentials: never in a
// ConfigMap nor as a literal in the manifests.
var secretNames = []string{"CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_KEY", "NATS_PASSWORD", "NATS_TOKEN", "RECONCILER_FINGERPRINT_KEY"}

// checkSecrets: every credential comes from a Secret; the NATS .creds file
// is a mounted Secret that NATS_CREDS names; the ConfigMap holds no
// credential, not even inside NATS_URL.
func checkSecrets(t *testing.T, pod corev1.PodSpec, c corev1.Container, cm corev1.ConfigMap, env map[string]corev1.EnvVar) {
	t.Helper()
	for _, name := range secretNames {
		if _, ok := cm.Data[name]; ok {
			t.Errorf("ConfigMap %s holds %s, a credential: use a Secret", cm.Name, name)
		}
		if e, ok := env[name]; ok && e.Value != "" {
			t.Errorf("the container sets %s as a literal: use a secretKeyRef", name)
		}
	}
	for _, u := range strings.Split(cm.Data["NATS_URL"], ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err != nil || pu.User != nil {
			t.Errorf("NATS_URL %q in the ConfigMap carries credentials (or does not parse): use NATS_CREDS", u)
		}
	}
	creds := env["NATS_CREDS"].Value
	if creds == "" {
		creds = cm.Data["NATS_CREDS"]
	}
	if creds == "" {
		t.Fatal("NATS_CREDS is not set: the reconciler would connect to NATS without credentials")
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		if !strings.HasPrefix(creds, strings.TrimSuffix(m.MountPath, "/")+"/") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			rel := strings.TrimPrefix(creds, strings.TrimSuffix(m.MountPath, "/")+"/")
			for _, it := range v.Secret.Items {
				mounted = mounted || it.Path == rel
			}
			if len(v.Secret.Items) == 0 {
				mounted = true
			}
			if !m.ReadOnly {
				t.Errorf("the Secret volume %s is mounted read-write", v.Name)
			}
		}
	}
	if !mounted {
		t.Errorf("NATS_CREDS=%s is not a file of a mounted Secret", creds)
	}
}

// checkServiceAccount: the pods run as their own ServiceAccount, which
// mounts no token.
func checkServiceAccount(t *testing.T, b built, pod corev1.PodSpec) {
	t.Helper()
	sa := b.accounts[0]
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("the pods run as ServiceAccount %q, want %q", pod.ServiceAccountName, sa.Name)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s must set automountServiceAccountToken: false", sa.Name)
	}
}

// checkNetworkPolicy: the policy selects the pods, denies by default in
// both directions, lets the monitoring namespace scrape the metrics port,
// and lets the pods reach NATS (the port of NATS_URL), the API on 443 and
// DNS, and nothing else.
func checkNetworkPolicy(t *testing.T, np networkingv1.NetworkPolicy, podLabels map[string]string, metrics corev1.ContainerPort, natsURL string) {
	t.Helper()
	if !selects(np.Spec.PodSelector.MatchLabels, podLabels) || len(np.Spec.PodSelector.MatchLabels) == 0 {
		t.Errorf("NetworkPolicy selects %v, not the pods %v", np.Spec.PodSelector.MatchLabels, podLabels)
	}
	types := map[networkingv1.PolicyType]bool{}
	for _, pt := range np.Spec.PolicyTypes {
		types[pt] = true
	}
	if !types[networkingv1.PolicyTypeIngress] || !types[networkingv1.PolicyTypeEgress] {
		t.Errorf("NetworkPolicy policyTypes %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	portIs := func(p networkingv1.NetworkPolicyPort, n int32, name string) bool {
		return p.Port != nil && (*p.Port == intstr.FromInt32(n) || (name != "" && *p.Port == intstr.FromString(name)))
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || !portIs(np.Spec.Ingress[0].Ports[0], metrics.ContainerPort, metrics.Name) ||
		len(np.Spec.Ingress[0].From) != 1 || np.Spec.Ingress[0].From[0].NamespaceSelector == nil {
		t.Errorf("NetworkPolicy ingress %+v, want the metrics port from one namespace", np.Spec.Ingress)
	} else if ns := np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; ns == "" {
		t.Errorf("NetworkPolicy ingress from %v, want a namespace by kubernetes.io/metadata.name", np.Spec.Ingress[0].From[0].NamespaceSelector)
	}

	natsPort := int32(4222)
	if u, err := url.Parse(strings.Split(natsURL, ",")[0]); err == nil && u.Port() != "" {
		p, _ := strconv.Atoi(u.Port())
		natsPort = int32(p)
	}
	reach := map[string]bool{}
	for _, rule := range np.Spec.Egress {
		for _, peer := range rule.To {
			// kustomize adds the app label to the podSelectors of a
			// NetworkPolicy: a podSelector here would select no NATS pod.
			if peer.PodSelector != nil {
				t.Errorf("NetworkPolicy egress peer %+v has a podSelector; select by namespace", peer)
			}
		}
		for _, p := range rule.Ports {
			switch {
			case portIs(p, natsPort, "") && len(rule.To) > 0 && rule.To[0].NamespaceSelector != nil:
				reach["nats"] = true
			case portIs(p, 443, "") && len(rule.To) > 0 && rule.To[0].IPBlock != nil && rule.To[0].IPBlock.CIDR == "0.0.0.0/0":
				reach["api"] = true
			case portIs(p, 53, "") && p.Protocol != nil && *p.Protocol == corev1.ProtocolUDP:
				reach["dns"] = true
			case portIs(p, 53, ""):
			default:
				t.Errorf("NetworkPolicy lets the pods reach port %v, which the reconciler does not use", p.Port)
			}
		}
	}
	for _, want := range []string{"nats", "api", "dns"} {
		if !reach[want] {
			t.Errorf("NetworkPolicy egress %+v does not let the pods reach %s", np.Spec.Egress, want)
		}
	}
}

// checkPrometheusRule: the rules are those of deploy/prometheus (the
// generator test in package deploy checks the text), each alert with a
// runbook_url.
func checkPrometheusRule(t *testing.T, pr prometheusRule, ns string) {
	t.Helper()
	n := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if u, err := url.Parse(r.Annotations["runbook_url"]); err != nil || u.Scheme != "https" || u.Fragment != strings.ToLower(r.Alert) {
				t.Errorf("PrometheusRule alert %s: runbook_url %q, want https://...#%s", r.Alert, r.Annotations["runbook_url"], strings.ToLower(r.Alert))
			}
		}
	}
	if n < 9 {
		t.Errorf("PrometheusRule has %d alerts, want those of deploy/prometheus/alerts.yaml", n)
	}
}

// checkDashboardConfigMap: the Grafana sidecar's ConfigMap holds the
// dashboard JSON of deploy/grafana, unchanged, under a stable name.
func checkDashboardConfigMap(t *testing.T, cm corev1.ConfigMap) {
	t.Helper()
	want, err := os.ReadFile("../grafana/reconciler.json")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := cm.Data["reconciler.json"]
	if !ok || got != string(want) {
		t.Errorf("the dashboard ConfigMap %q does not hold deploy/grafana/reconciler.json (keys %d)", cm.Name, len(cm.Data))
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(got), &v); err != nil || v["uid"] == nil {
		t.Errorf("the dashboard ConfigMap's JSON: %v (uid %v)", err, v["uid"])
	}
	if cm.Name != "reconciler-dashboard" {
		t.Errorf("dashboard ConfigMap named %q, want reconciler-dashboard without a hash suffix (a new name per change would load the dashboard twice)", cm.Name)
	}
}
