package metrics

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/cfapi"
)

func TestMetricsLintAndPrecreatedSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, testReasons...)
	h := m.APIHooks()
	h.Request(cfapi.RequestInfo{Endpoint: cfapi.EPGetSettings, Method: "GET", Status: 200, Attempt: 1, Duration: 20 * time.Millisecond})
	h.Request(cfapi.RequestInfo{Endpoint: cfapi.EPPatchSettings, Method: "PATCH", Attempt: 1, Err: errors.New("reset")})
	h.Retry(cfapi.EPPatchSettings, 1, time.Second, errors.New("reset"))
	h.RateLimited(cfapi.EPGetSettings, time.Second)
	h.BudgetWait(cfapi.EPGetSettings, 250*time.Millisecond)
	h.Request(cfapi.RequestInfo{Endpoint: cfapi.EPGetSettings, Method: "GET", Status: 403, Attempt: 1})
	h.Request(cfapi.RequestInfo{Endpoint: cfapi.EPGetSettings, Method: "GET", Status: 404, Attempt: 1})

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	want := `
# HELP reconciler_api_requests_total Cloudflare API attempts, by endpoint and HTTP status ("error" when no response).
# TYPE reconciler_api_requests_total counter
reconciler_api_requests_total{code="200",endpoint="create_namespace"} 0
reconciler_api_requests_total{code="200",endpoint="create_worker_version"} 0
reconciler_api_requests_total{code="200",endpoint="get_bindings"} 0
reconciler_api_requests_total{code="200",endpoint="get_content"} 0
reconciler_api_requests_total{code="200",endpoint="get_script"} 0
reconciler_api_requests_total{code="200",endpoint="get_settings"} 1
reconciler_api_requests_total{code="200",endpoint="get_worker_version"} 0
reconciler_api_requests_total{code="200",endpoint="list_deployments"} 0
reconciler_api_requests_total{code="200",endpoint="list_namespaces"} 0
reconciler_api_requests_total{code="200",endpoint="list_scripts"} 0
reconciler_api_requests_total{code="200",endpoint="list_worker_versions"} 0
reconciler_api_requests_total{code="200",endpoint="patch_settings"} 0
reconciler_api_requests_total{code="200",endpoint="post_deployment"} 0
reconciler_api_requests_total{code="200",endpoint="post_version"} 0
reconciler_api_requests_total{code="200",endpoint="put_script"} 0
reconciler_api_requests_total{code="403",endpoint="get_settings"} 1
reconciler_api_requests_total{code="404",endpoint="get_settings"} 1
reconciler_api_requests_total{code="error",endpoint="patch_settings"} 1
# HELP reconciler_api_rate_limited_total 429 answers from the Cloudflare API; each pauses the shared budget. The goal is zero.
# TYPE reconciler_api_rate_limited_total counter
reconciler_api_rate_limited_total 1
# HELP reconciler_events_total Events acknowledged or terminated, by outcome (applied, noop, stale, dead_lettered).
# TYPE reconciler_events_total counter
reconciler_events_total{outcome="applied"} 0
reconciler_events_total{outcome="dead_lettered"} 0
reconciler_events_total{outcome="noop"} 0
reconciler_events_total{outcome="stale"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"reconciler_api_requests_total", "reconciler_api_rate_limited_total", "reconciler_events_total"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.APIRetries.WithLabelValues(cfapi.EPPatchSettings)); got != 1 {
		t.Fatalf("retries = %v", got)
	}
	if got := testutil.ToFloat64(m.APIAuthFailures); got != 1 {
		t.Fatalf("auth failures = %v, want 1 (the 403; a 404 is not an auth failure)", got)
	}
	budgetWait := `
# HELP reconciler_rate_budget_wait_seconds Time an API attempt waited for the shared request budget.
# TYPE reconciler_rate_budget_wait_seconds histogram
reconciler_rate_budget_wait_seconds_bucket{le="0.001"} 0
reconciler_rate_budget_wait_seconds_bucket{le="0.004"} 0
reconciler_rate_budget_wait_seconds_bucket{le="0.016"} 0
reconciler_rate_budget_wait_seconds_bucket{le="0.064"} 0
reconciler_rate_budget_wait_seconds_bucket{le="0.256"} 1
reconciler_rate_budget_wait_seconds_bucket{le="1.024"} 1
reconciler_rate_budget_wait_seconds_bucket{le="4.096"} 1
reconciler_rate_budget_wait_seconds_bucket{le="16.384"} 1
reconciler_rate_budget_wait_seconds_bucket{le="65.536"} 1
reconciler_rate_budget_wait_seconds_bucket{le="262.144"} 1
reconciler_rate_budget_wait_seconds_bucket{le="+Inf"} 1
reconciler_rate_budget_wait_seconds_sum 0.25
reconciler_rate_budget_wait_seconds_count 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(budgetWait), "reconciler_rate_budget_wait_seconds"); err != nil {
		t.Fatal(err)
	}
	// No label ever carries a script or event id: every label is one of a
	// fixed set.
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, lp := range metric.GetLabel() {
				switch lp.GetName() {
				case "outcome", "reason", "result", "strategy", "endpoint", "code", "lane", "from", "to", "kind",
					"version", "commit", "go_version":
				default:
					t.Errorf("%s has unexpected label %s", mf.GetName(), lp.GetName())
				}
			}
		}
	}
}

// TestEverySeriesExistsFromTheStart: a scrape of fresh collectors already
// has every family, every lane and every outcome, so a dashboard shows
// zeros and rate() sees the first increment.
func TestEverySeriesExistsFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, testReasons...)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{} // family -> label pairs of each series
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			var pairs []string
			for _, lp := range metric.GetLabel() {
				pairs = append(pairs, lp.GetName()+"="+lp.GetValue())
			}
			seen[mf.GetName()] = append(seen[mf.GetName()], strings.Join(pairs, ","))
		}
	}
	if got, want := len(seen), 40; got != want {
		t.Errorf("%d families in a fresh scrape, want %d (a collector without series, or one added without updating this test)", got, want)
	}
	want := map[string][]string{
		"reconciler_queue_depth":              {"lane=backfill", "lane=live"},
		"reconciler_held_events":              {"lane=backfill", "lane=live"},
		"reconciler_consumer_pending":         {"lane=backfill", "lane=live"},
		"reconciler_backfill_scripts_total":   {"outcome=changed", "outcome=failed", "outcome=unchanged"},
		"reconciler_drift_repaired_total":     {"kind=add", "kind=remove", "kind=rename", "kind=update"},
		"reconciler_writes_total":             {"strategy=script", "strategy=settings", "strategy=version"},
		"reconciler_strategy_fallbacks_total": {"from=settings,to=version"},
		"reconciler_nats_connected":           {""},
		"reconciler_ready":                    {""},
		"reconciler_rate_budget_paused":       {""},
		"reconciler_panics_recovered_total":   {""},
	}
	for name, series := range want {
		if diff := cmp.Diff(series, seen[name]); diff != "" {
			t.Errorf("%s series (-want +got):\n%s", name, diff)
		}
	}
	if n := len(seen["reconciler_api_request_duration_seconds"]); n != len(apiEndpoints) {
		t.Errorf("reconciler_api_request_duration_seconds has %d series, want one per endpoint (%d)", n, len(apiEndpoints))
	}
	if n := len(seen["reconciler_dead_letters_total"]); n != len(testReasons) {
		t.Errorf("reconciler_dead_letters_total has %d series, want one per reason (%d)", n, len(testReasons))
	}
	if got := testutil.ToFloat64(m.QueueDepth.WithLabelValues(LaneBackfill)); got != 0 {
		t.Errorf("backfill queue depth = %v", got)
	}
}

func TestBuildInfoAndBudget(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, testReasons...)
	if n := testutil.CollectAndCount(m.BuildInfo); n != 1 {
		t.Fatalf("fresh build info has %d series, want 1", n)
	}
	m.SetBuildInfo("1.4.0", "0123abc")
	m.SetBuildInfo("1.5.0", "4567def") // replaces, never adds
	want := fmt.Sprintf(`
# HELP reconciler_build_info Always 1; the labels say which build is running.
# TYPE reconciler_build_info gauge
reconciler_build_info{commit="4567def",go_version=%q,version="1.5.0"} 1
`, runtime.Version())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "reconciler_build_info"); err != nil {
		t.Fatal(err)
	}
	m.SetRateBudget(1100, 5*time.Minute)
	if got := testutil.ToFloat64(m.BudgetRequests); got != 1100 {
		t.Errorf("budget requests = %v", got)
	}
	if got := testutil.ToFloat64(m.BudgetWindow); got != 300 {
		t.Errorf("budget window = %v", got)
	}
}

func TestHandlerEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, testReasons...)
	var ready error = errors.New("starting")
	srv := httptest.NewServer(Handler(reg, func() error { return ready }))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Fatalf("readyz before ready = %d %q", code, body)
	}
	ready = nil
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz = %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "reconciler_events_total") {
		t.Fatalf("metrics = %d", code)
	}
}

// TestReadyMirrorsReadyz: with Metrics.Handler, reconciler_ready follows
// what /readyz answers, in a scrape of /metrics too.
func TestReadyMirrorsReadyz(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, testReasons...)
	var ready error = errors.New("NATS is not connected")
	srv := httptest.NewServer(m.Handler(reg, func() error { return ready }))
	defer srv.Close()
	scrape := func() string {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if body := scrape(); !strings.Contains(body, "\nreconciler_ready 0\n") {
		t.Fatalf("not ready, but the scrape says:\n%s", body)
	}
	ready = nil
	if body := scrape(); !strings.Contains(body, "\nreconciler_ready 1\n") {
		t.Fatalf("ready, but the scrape says:\n%s", body)
	}
	ready = errors.New("shutting down")
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || testutil.ToFloat64(m.Ready) != 0 {
		t.Fatalf("/readyz = %d, reconciler_ready = %v; want 503 and 0", resp.StatusCode, testutil.ToFloat64(m.Ready))
	}
}

// testReasons stand for the pipeline's dead-letter reasons.
var testReasons = []string{"invalid_json", "not_found", "max_deliveries"}
