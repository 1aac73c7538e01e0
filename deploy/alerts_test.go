package deploy

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"sigs.k8s.io/yaml"
)

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

// ruleTestFile is the part of a promtool unit-test file the tests read.
type ruleTestFile struct {
	RuleFiles          []string `json:"rule_files"`
	EvaluationInterval string   `json:"evaluation_interval"`
	Tests              []struct {
		Name           string `json:"name"`
		Interval       string `json:"interval"`
		InputSeries    []any  `json:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string `json:"eval_time"`
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// alertRules returns the rules of alerts.yaml by alert name.
func alertRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	readYAML(t, "prometheus/alerts.yaml", &rf)
	return rf
}

// TestAlertRulesAreDocumentedAndTested: every alert has a severity, a
// summary, a description, a runbook_url to its section of
// docs/runbooks.md and a for: duration, and a unit test in which it fires
// and one in which it stays silent.
func TestAlertRulesAreDocumentedAndTested(t *testing.T) {
	rf := alertRules(t)
	var tf ruleTestFile
	readYAML(t, "prometheus/alerts_test.yaml", &tf)
	if !slices.Equal(tf.RuleFiles, []string{"alerts.yaml"}) {
		t.Errorf("alerts_test.yaml tests %v, want [alerts.yaml]", tf.RuleFiles)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTests {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname] = true
			} else {
				silent[at.Alertname] = true
			}
		}
	}
	runbooks := runbookSections(t)
	seen := map[string]bool{}
	n := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			n++
			if seen[r.Alert] {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if len(r.Annotations[a]) < 20 {
					t.Errorf("%s: annotation %s is missing or too short to help: %q", r.Alert, a, r.Annotations[a])
				}
			}
			if want := runbookBase + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if len(runbooks[r.Alert]) < 200 {
				t.Errorf("%s: docs/runbooks.md has no section \"## %s\", or one too short to help (%d characters)", r.Alert, r.Alert, len(runbooks[r.Alert]))
			}
			delete(runbooks, r.Alert)
			// A single event (one dead letter, one 429, one sample) must
			// not page at once.
			if d, err := model.ParseDuration(r.For); err != nil || time.Duration(d) < 2*time.Minute {
				t.Errorf("%s: for: %q, want at least 2m", r.Alert, r.For)
			}
			for a := range r.Annotations {
				if a != "summary" && a != "description" && a != "runbook_url" {
					t.Errorf("%s: annotation %s, want only summary, description and runbook_url", r.Alert, a)
				}
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no test in alerts_test.yaml in which it fires", r.Alert)
			}
			if !silent[r.Alert] {
				t.Errorf("%s: no test in alerts_test.yaml in which it stays silent", r.Alert)
			}
		}
	}
	if n < 9 {
		t.Errorf("%d alerts, want at least 9", n)
	}
	for name := range runbooks {
		t.Errorf("docs/runbooks.md has a section %q for no alert", name)
	}
	for name := range fires {
		if !seen[name] {
			t.Errorf("alerts_test.yaml tests %s, which alerts.yaml does not define", name)
		}
	}
}

// runbookBase is where the runbooks are; an overlay may rewrite it.
const runbookBase = "https://github.com/reconciler/reconciler/blob/main/docs/runbooks.md"

// runbookSections returns the text of each "## " section of
// docs/runbooks.md by heading.
func runbookSections(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	cur := ""
	for _, line := range strings.Split(readFile(t, "../docs/runbooks.md"), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			cur = strings.TrimSpace(h)
			out[cur] = ""
			continue
		}
		if cur != "" {
			out[cur] += line + "\n"
		}
	}
	return out
}

// TestPromtoolChecksAndTestsTheRules runs `promtool check rules` and
// `promtool test rules` (unit tests of each alert).
func TestPromtoolChecksAndTestsTheRules(t *testing.T) {
	promtool := tool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yaml"},
		{"test", "rules", "alerts_test.yaml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		} else {
			t.Logf("promtool %v:\n%s", args, out)
		}
	}
}
