package deploy

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const prometheusRulePath = "kubernetes/base/prometheusrule.yaml"

// prometheusRule wraps the rule file, unchanged but indented, into the
// Prometheus Operator's PrometheusRule, so the rules the promtool tests
// check are the ones the operator loads.
func prometheusRule(rules []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`# GENERATED from deploy/prometheus/alerts.yaml by ` + "`go generate ./deploy/...`" + `;
# do not edit: edit alerts.yaml (and its promtool tests), then regenerate.
# The Prometheus that loads it may need a label here (see its
# ruleSelector); the example overlay adds one.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: reconciler
spec:
`)
	body := string(rules)
	i := strings.Index(body, "\ngroups:")
	body = body[i+1:]
	for _, line := range strings.SplitAfter(body, "\n") {
		if strings.TrimSpace(line) == "" {
			b.WriteString(strings.TrimLeft(line, " "))
			continue
		}
		b.WriteString("  " + line)
	}
	return b.Bytes()
}

// TestPrometheusRuleIsGenerated: the PrometheusRule of the kustomize base
// is alerts.yaml wrapped, byte for byte (run go generate ./deploy/... after
// changing the rules), and it decodes to the same rules.
func TestPrometheusRuleIsGenerated(t *testing.T) {
	rules, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := prometheusRule(rules)
	if *update {
		if err := os.WriteFile(prometheusRulePath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(prometheusRulePath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from prometheus/alerts.yaml wrapped: run `go generate ./deploy/...`", prometheusRulePath)
	}
	var pr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec ruleFile `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(got, &pr); err != nil {
		t.Fatalf("%s: %v", prometheusRulePath, err)
	}
	rf := alertRules(t)
	a, _ := yaml.Marshal(rf)
	b, _ := yaml.Marshal(pr.Spec)
	if !bytes.Equal(a, b) || len(rf.Groups) == 0 {
		t.Errorf("the PrometheusRule's spec decodes to other rules than alerts.yaml")
	}
}
