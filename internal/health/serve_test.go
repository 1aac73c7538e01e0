package health

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHandlerRoutesHealthz: /healthz is the watchdog's, every other path
// the wrapped handler's; Sum adds gauges and counters of the names given.
func TestHandlerRoutesHealthz(t *testing.T) {
	reg := prometheus.NewRegistry()
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "reconciler_queue_depth"}, []string{"lane"})
	done := prometheus.NewCounter(prometheus.CounterOpts{Name: "reconciler_reconcile_total"})
	reg.MustRegister(depth, done)
	depth.WithLabelValues("live").Set(2)
	depth.WithLabelValues("backfill").Set(3)
	done.Add(4)
	if got := Sum(reg, "reconciler_queue_depth", "reconciler_reconcile_total", "absent"); got != 9 {
		t.Errorf("Sum = %v, want 9", got)
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := Handler(reg, 1<<40, []string{"reconciler_queue_depth"}, []string{"reconciler_reconcile_total"}, inner)
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/metrics": http.StatusTeapot, "/readyz": http.StatusTeapot} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
	}
}
