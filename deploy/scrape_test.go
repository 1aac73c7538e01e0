package deploy

import (
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/testutil"
)

// usedMetrics returns every reconciler metric name the dashboard and the
// alert rules mention, each with where it is used.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	add := func(expr, where string) {
		for _, m := range metricNames(expr) {
			if !slices.Contains(used[m], where) {
				used[m] = append(used[m], where)
			}
		}
	}
	d, panels := loadDashboard(t)
	for _, p := range panels {
		for _, tg := range p.Targets {
			add(tg.Expr, fmt.Sprintf("panel %q", p.Title))
		}
	}
	for _, v := range d.Templating.List {
		add(v.Definition, "variable "+v.Name)
	}
	for _, g := range alertRules(t).Groups {
		for _, r := range g.Rules {
			add(r.Expr, "alert "+r.Alert)
		}
	}
	return used
}

// exposedNames returns the names a scrape offers to queries: each family's
// name, and the _bucket, _sum and _count series of histograms and
// summaries.
func exposedNames(mfs map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for name, mf := range mfs {
		if len(mf.GetMetric()) == 0 {
			continue
		}
		names[name] = true
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name+"_sum"], names[name+"_count"] = true, true
		}
	}
	return names
}

// TestDashboardAndAlertMetricsExist scrapes a freshly started `reconciler
// run` that has done no work yet: every metric the dashboard or an alert
// uses must already be there, or a rename (or a series not pre-created)
// would blank a panel or silence an alert without anyone noticing.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	used := usedMetrics(t)
	_, base := emulator(t, 0)
	r := runReconciler(t, base, "")
	exposed := exposedNames(r.scrape(t))
	for _, name := range slices.Sorted(maps.Keys(used)) {
		if !exposed[name] {
			t.Errorf("%s is not in the scrape of a running reconciler; used by %s", name, strings.Join(used[name], ", "))
		}
	}
	t.Logf("%d metric names used by the dashboard and the alerts, all exposed", len(used))
}

// TestVersionShowsTheStampedCommit: the -ldflags the Dockerfile passes
// reach `reconciler version`.
func TestVersionShowsTheStampedCommit(t *testing.T) {
	out, err := exec.Command(reconcilerBinary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("reconciler version: %v\n%s", err, out)
	}
	want := fmt.Sprintf("reconciler %s (commit %s,", buildVersion, buildCommit)
	if !strings.HasPrefix(string(out), want) {
		t.Fatalf("reconciler version printed %q, want it to start with %q", out, want)
	}
}

// TestPrometheusScrapesARun is the end-to-end check of the observability
// path: a real Prometheus server scrapes `reconciler run` every second
// while events are published and applied, and PromQL through its HTTP API
// returns the reconciles and writes that the run made (counted
// independently by the API emulator).
func TestPrometheusScrapesARun(t *testing.T) {
	const tenants = 3
	emu, base := emulator(t, tenants)
	r := runReconciler(t, base, "")
	prom := startPrometheus(t, r.metricsAddr)
	waitQuery(t, prom, `up{job="reconciler"}`, 1)

	r.publish(t, events(tenants, "DEPLOY_E2E"))
	testutil.Eventually(t, 60*time.Second, func() bool {
		for i := 1; i <= tenants; i++ {
			bs, found := emu.Bindings(cfapitest.DefaultAccount, "customers", cfapitest.TenantName(i))
			if !found {
				t.Fatalf("%s is missing from the emulator", cfapitest.TenantName(i))
			}
			if _, ok := wire.Bindings(bs).ByName("DEPLOY_E2E"); !ok {
				return false
			}
		}
		return true
	}, "every tenant got its binding; reconciler log:\n%s", r.out)

	writes := emu.Stats().Requests[cfapi.EPPatchSettings][200]
	if writes != tenants {
		t.Fatalf("the emulator saw %d successful settings writes, want %d (one per script)", writes, tenants)
	}
	waitQuery(t, prom, `sum(reconciler_writes_total{job="reconciler",strategy="settings"})`, float64(writes))
	waitQuery(t, prom, `sum(reconciler_writes_total{job="reconciler"})`, float64(writes))
	waitQuery(t, prom, `sum(reconciler_reconcile_total{job="reconciler",result="applied"})`, tenants)
	waitQuery(t, prom, `sum(reconciler_events_total{job="reconciler",outcome="applied"})`, tenants)
	waitQuery(t, prom, `sum(reconciler_api_requests_total{job="reconciler",endpoint="patch_settings",code="200"})`, float64(writes))
	// The gauges the alerts rest on are wired: ready, connected, the
	// budget and the build.
	waitQuery(t, prom, `max(reconciler_ready{job="reconciler"})`, 1)
	waitQuery(t, prom, `max(reconciler_nats_connected{job="reconciler"})`, 1)
	waitQuery(t, prom, `count(reconciler_rate_budget_requests{job="reconciler"} > 0)`, 1)
	waitQuery(t, prom, `count(reconciler_build_info{job="reconciler",go_version=~"go.+"})`, 1)

	// The dashboard's own panel shows the writes.
	_, panels := loadDashboard(t)
	for _, p := range panels {
		if p.Title != "Writes by strategy" {
			continue
		}
		expr, err := expandVars(p.Targets[0].Expr)
		if err != nil {
			t.Fatal(err)
		}
		sum, _, err := prom.query(expr)
		if err != nil || sum <= 0 {
			t.Errorf("panel %q shows %v (err %v) right after %d writes, want a positive rate", p.Title, sum, err, writes)
		}
		return
	}
	t.Error("the dashboard has no panel \"Writes by strategy\"")
}

// waitQuery polls Prometheus until expr sums to want.
func waitQuery(t *testing.T, prom *promServer, expr string, want float64) {
	t.Helper()
	var got float64
	var err error
	testutil.Eventually(t, 30*time.Second, func() bool {
		got, _, err = prom.query(expr)
		return err == nil && got == want
	}, "%s", lazy(func() string {
		return fmt.Sprintf("%s = %v (err %v), want %v; prometheus log:\n%s", expr, got, err, want, prom.out)
	}))
}

// lazy formats a failure message when it is printed, not before.
type lazy func() string

func (l lazy) String() string { return l() }
