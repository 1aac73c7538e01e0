package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/cfapi"
)

func TestMetricsLintAndPrecreatedSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	h := m.APIHooks()
	h.Request(cfapi.RequestInfo{Endpoint: cfapi.EPGetSettings, Method: "GET", Status: 200, Attempt: 1, Duration: 20 * time.Millisecond})
	h.Request(cfapi.RequestInfo{Endpoint: cfapi.EPPatchSettings, Method: "PATCH", Attempt: 1, Err: errors.New("reset")})
	h.Retry(cfapi.EPPatchSettings, 1, time.Second, errors.New("reset"))
	h.RateLimited(cfapi.EPGetSettings, time.Second)
	h.BudgetWait(cfapi.EPGetSettings, 250*time.Millisecond)

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
reconciler_api_requests_total{code="200",endpoint="get_settings"} 1
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
	if got := testutil.ToFloat64(m.BudgetWaitSeconds); got != 0.25 {
		t.Fatalf("budget wait seconds = %v", got)
	}
	// No label ever carries a script or event id: every label is one of a
	// fixed set.
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, lp := range metric.GetLabel() {
				switch lp.GetName() {
				case "outcome", "reason", "result", "strategy", "endpoint", "code", "lane":
				default:
					t.Errorf("%s has unexpected label %s", mf.GetName(), lp.GetName())
				}
			}
		}
	}
}

func TestHandlerEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
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
