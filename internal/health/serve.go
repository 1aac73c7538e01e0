package health

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Handler serves /healthz from a watchdog over the metrics of g, and
// every other path from h. /healthz fails when the gauges pending sum to
// more than zero and the counters progress have not grown for bound: a
// wedged process, which a restart cures.
func Handler(g prometheus.Gatherer, bound time.Duration, pending, progress []string, h http.Handler) http.Handler {
	wd := New(Options{Bound: bound,
		Pending:  func() int { return int(Sum(g, pending...)) },
		Progress: func() float64 { return Sum(g, progress...) }})
	hz := wd.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			hz.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Sum sums every series of the named gauges and counters of g.
func Sum(g prometheus.Gatherer, names ...string) float64 {
	fams, _ := g.Gather()
	total := 0.0
	for _, f := range fams {
		for _, n := range names {
			if f.GetName() != n {
				continue
			}
			for _, mt := range f.GetMetric() {
				total += mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
			}
		}
	}
	return total
}
