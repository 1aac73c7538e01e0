package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/backfill"
	"github.com/reconciler/reconciler/internal/process"
	"github.com/reconciler/reconciler/internal/progress"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/jobs/budget"
	"github.com/reconciler/reconciler/internal/jobs/natsembed"
	"github.com/reconciler/reconciler/internal/testutil"
)

// noBurst is a budget with nothing available at once, so that an ETA
// counts every request at the budget's rate.
type noBurst struct{ progress.Budget }

func (noBurst) Available() float64 { return 0 }

// etaOf returns the ETA a backfill's tracker on the budget of lim shows
// for total scripts of which none is done (two requests each).
func etaOf(lim *ratelimit.Limiter, total int) time.Duration {
	tr := backfill.NewTracker("eta", nil, progress.BudgetETA(noBurst{progress.LimiterBudget(lim)}, nil), nil)
	for i := range total {
		tr.Member(fmt.Sprint("script-", i))
	}
	tr.Counted()
	return tr.Progress().ETA
}

// TestBackfillETAFollowsTheAPIView: a backfill's ETA counts on the
// --rate-limit until the API has said something about the user's budget;
// once a running pipeline has seen the headers and shared them through
// the budget key, the backfill's ETA counts on what the API leaves after
// the reserve and the other tools' use (budget.Source.AllowedRate). A
// backfill on a budget of its own counts on its --rate-limit.
func TestBackfillETAFollowsTheAPIView(t *testing.T) {
	const scripts = 10
	ns, err := natsembed.Start(t.TempDir(), "127.0.0.1:-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	connect := func() jetstream.JetStream {
		nc, err := nats.Connect(ns.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	a, err := parseAPIFlags([]string{"--rate-limit", "1200/5m", "--rate-reserve", "10%", "--budget-key", "eta-test", "--api-base-url", "http://127.0.0.1:1/client/v4"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	creds := cfapi.Credentials{Token: "eta-token"}
	runLim, closeRun, err := a.spec().Limiter(ctx, creds, connect(), process.Ensure, 1, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer closeRun()
	bfLim, closeBF, err := a.spec().Limiter(ctx, creds, connect(), process.Shared, 1, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer closeBF()

	// No view yet: the configured budget, as before the headers.
	old := time.Duration(float64(scripts) * 2 / (1200.0 / 300) * float64(time.Second))
	if got := etaOf(bfLim, scripts); got != old {
		t.Fatalf("ETA without a view %s, want %s (%d scripts × 2 requests at 1200/5m)", got, old, scripts)
	}

	// The pipeline sees an answer: a quota of 120 a minute of which 30 are
	// left, the rest spent by another tool; its next request puts the view
	// into the key.
	runSrc := runLim.Source().(*budget.Source)
	runSrc.ObserveRateLimit(ratelimit.RateLimitView{Name: "default", Remaining: 30, Reset: time.Minute, Quota: 120, Window: time.Minute, Seen: time.Now()})
	if _, err := runLim.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	bfSrc := bfLim.Source().(*budget.Source)
	testutil.Eventually(t, 10*time.Second, func() bool { _, ok := bfSrc.APIView(); return ok },
		"the backfill's budget never saw the pipeline's view")
	v, _ := bfSrc.APIView()
	if v.Others < 80 {
		t.Fatalf("the view estimates %d requests of other tools, want about 90: %+v", v.Others, v)
	}
	left := float64(v.Quota - v.Quota/10 - v.Others) // less the 10% reserve
	allowed := left / v.Window.Seconds()
	if got := bfSrc.AllowedRate(); got != allowed {
		t.Fatalf("AllowedRate %v, want (%d − %d − %d) / %s = %v", got, v.Quota, v.Quota/10, v.Others, v.Window, allowed)
	}
	want := time.Duration(float64(scripts) * 2 / allowed * float64(time.Second))
	got := etaOf(bfLim, scripts)
	if got != want {
		t.Fatalf("ETA under the API's view %s, want %s", got, want)
	}
	if got <= old*5 {
		t.Errorf("ETA %s under a view that leaves %v requests/s is not far above the %s of the full budget", got, allowed, old)
	}

	// A budget of this process alone: its --rate-limit.
	local, _, err := a.spec().Limiter(ctx, creds, nil, process.Local, 1, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if got := etaOf(local, scripts); got != old {
		t.Errorf("ETA on a local budget %s, want %s", got, old)
	}
}
