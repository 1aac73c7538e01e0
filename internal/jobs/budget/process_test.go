package budget

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/metrics"
)

// TestParseReserve: N requests or P% of the quota; zero is none (-1);
// negative, 100% and more, and words are refused.
func TestParseReserve(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		frac float64
		ok   bool
	}{
		{"10%", 0, 0.1, true}, {" 2.5 % ", 0, 0.025, true}, {"0%", 0, -1, true}, {"50", 50, 0, true}, {"0", 0, -1, true},
		{"100%", 0, 0, false}, {"-1", 0, 0, false}, {"-5%", 0, 0, false}, {"lots", 0, 0, false}, {"", 0, 0, false},
	} {
		n, frac, ok := ParseReserve(c.in)
		if n != c.n || frac != c.frac || ok != c.ok {
			t.Errorf("ParseReserve(%q) = %d, %v, %v; want %d, %v, %v", c.in, n, frac, ok, c.n, c.frac, c.ok)
		}
	}
}

// TestSampleGauges: one sample sets the connection, pause and token
// gauges from the limiter (ctx already ended: it samples once, returns).
func TestSampleGauges(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	lim, err := ratelimit.NewLimiter(100, time.Minute, 1)
	if err != nil {
		t.Fatal(err)
	}
	lim.Pause(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	SampleGauges(ctx, m, func() bool { return true }, lim)
	if v := testutil.ToFloat64(m.NATSConnected); v != 1 {
		t.Errorf("connected %v", v)
	}
	if v := testutil.ToFloat64(m.BudgetPaused); v != 1 {
		t.Errorf("paused %v, want 1 after a pause", v)
	}
}
