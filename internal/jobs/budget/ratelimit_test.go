package budget_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/jobs/budget"
	"github.com/reconciler/reconciler/internal/testutil"
)

// The tests in this file run against an emulator whose answers carry the
// Ratelimit headers, with a strict sliding window that blocks the token on
// the first request over it. RECONCILER_BUDGET_WINDOWS sets how many
// windows each phase runs (default 4; raise it for longer measurements).

func phaseWindows() int {
	if n, err := strconv.Atoi(os.Getenv("RECONCILER_BUDGET_WINDOWS")); err == nil && n > 0 {
		return n
	}
	return 4
}

// TestOtherToolNeverSees429: another tool spends 25% of the user's budget
// at a steady rate while one and then two processes, each configured with
// the whole budget, hammer the API; midway the other tool adds 30% of the
// budget for a window. Neither the processes nor the other tool get a 429:
// the processes bound themselves by what the API says is left, less the
// reserve, and leave the rest. The estimate of the other tool's use lags
// by the requests in flight (reserved, not yet counted by the API), which
// the reserve must cover: each process runs `goroutines` (8) workers
// against a reserve of 10 (in production 10% of 1,200 is 120).
func TestOtherToolNeverSees429(t *testing.T) {
	const quota = 100 // per testWindow
	for _, n := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d processes", n), func(t *testing.T) {
			natsURL := startNATS(t)
			ensureBucket(t, natsURL)
			srv, base := startAPIWith(t, cfapitest.Options{Token: token, RateLimit: quota, RateWindow: testWindow, RateSliding: true})
			srv.SetOtherToolRate(0.25 * quota / testWindow.Seconds())
			var ps []*proc
			for i := range n {
				ps = append(ps, newProc(t, fmt.Sprintf("p%d", i), natsURL, base, token, testConfig()))
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for _, p := range ps {
				p.hammer(ctx, &wg, goroutines)
			}
			total := func() int { return srv.Stats().Total }
			windows := phaseWindows()
			// Steady: the processes get what the other tool leaves,
			// less the reserve (about 65 a window).
			waitRequests(t, total, windows*quota*6/10)
			steady := total()
			burstOther := srv.OtherToolStats().Accepted
			srv.SetOtherToolRate(0.55 * quota / testWindow.Seconds())
			waitRequests(t, total, steady+quota*3/10) // about a window at 35 a window
			srv.SetOtherToolRate(0.25 * quota / testWindow.Seconds())
			burstOther = srv.OtherToolStats().Accepted - burstOther
			waitRequests(t, total, total()+windows*quota*6/10)
			cancel()
			wg.Wait()
			srv.SetOtherToolRate(0)

			f := measure(t, srv, testWindow)
			other := srv.OtherToolStats()
			st := sumStats(ps...)
			var waits int64
			for _, p := range ps {
				waits += p.src.Stats().APIWaits
			}
			t.Logf("reconciler: %d requests, busiest window %d, %d × 429; other tool: %d accepted (%d during its burst), %d × 429; %d waits for the API's word, %d conflicts",
				f.requests, f.peak, f.throttled, other.Accepted, burstOther, other.RateLimited, waits, st.Conflicts)
			if f.throttled != 0 || other.RateLimited != 0 {
				t.Errorf("429s: %d to the reconciler, %d to the other tool", f.throttled, other.RateLimited)
			}
			if f.peak > quota*75/100 {
				t.Errorf("busiest window of the reconciler %d: it did not leave the other tool its 25%%", f.peak)
			}
			if waits == 0 {
				t.Error("no process ever waited for the API's word: the bound was not exercised")
			}
		})
	}
}

// TestAutoBudgetFromThePolicy: with no other tool, `--rate-limit auto`
// starts from a conservative budget, takes the policy of the first answer
// (20 per second, less a reserve of 2) and keeps to it: no 429, no window
// of the emulator over 20. It logs the wall time against calls ÷ (quota −
// reserve), the figure the README quotes.
func TestAutoBudgetFromThePolicy(t *testing.T) {
	const quota, reserve = 20, 2
	natsURL := startNATS(t)
	ensureBucket(t, natsURL)
	srv, base := startAPIWith(t, cfapitest.Options{Token: token, RateLimit: quota, RateWindow: testWindow, RateSliding: true})
	cfg := budget.Config{Auto: true, Budget: 10, Window: 10 * time.Second, OpTimeout: 300 * time.Millisecond}
	p := newProc(t, "auto", natsURL, base, token, cfg)
	calls := phaseWindows() * 5 * (quota - reserve)
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	p.hammer(ctx, &wg, goroutines)
	testutil.Eventually(t, time.Duration(calls/(quota-reserve)+20)*testWindow, func() bool { return srv.Stats().Total >= calls },
		"the emulator did not see %d requests", calls)
	wall := time.Since(start)
	cancel()
	wg.Wait()
	f := measure(t, srv, testWindow)
	b, w := p.src.Budget()
	st := p.src.Stats()
	t.Logf("granted %d, expired %d, dropped %d, waits for the API's word %d, reservations %d, views %d",
		st.Granted, st.Expired, st.Dropped, st.APIWaits, st.Reservations, st.Views)
	ideal := time.Duration(float64(calls) / float64(quota-reserve) * float64(testWindow))
	t.Logf("auto budget %d/%s; %d calls in %s, ideal %s: ratio %.3f; busiest window %d; %d × 429; allowed rate %.1f/s, measured %.2f/s",
		b, w, calls, wall.Round(time.Millisecond), ideal, wall.Seconds()/ideal.Seconds(), f.peak, f.throttled, p.src.AllowedRate(), f.perSecond)
	if b != quota-reserve || w != testWindow {
		t.Errorf("auto budget %d/%s, want %d/%s from the policy", b, w, quota-reserve, testWindow)
	}
	if f.throttled != 0 || f.peak > quota {
		t.Errorf("busiest window %d, %d × 429", f.peak, f.throttled)
	}
}

// TestTwoTokensOfOneUserShareABudget: two tokens of one user draw from one
// key when the budget is keyed by the user the API counts: together they
// keep the user's window and get no 429.
func TestTwoTokensOfOneUserShareABudget(t *testing.T) {
	const tokenA, tokenB = "tok-A-secret", "tok-B-secret"
	natsURL := startNATS(t)
	ensureBucket(t, natsURL)
	srv, base := startAPIWith(t, cfapitest.Options{Token: tokenA, MoreTokens: []string{tokenB},
		RateLimit: testBudget, RateWindow: testWindow, RateSliding: true, OmitRateHeaders: true})
	var ps []*proc
	for _, tok := range []string{tokenA, tokenB} {
		lim, err := ratelimit.NewLimiter(2, time.Second, 0)
		if err != nil {
			t.Fatal(err)
		}
		c, err := cfapi.New(cfapi.Config{BaseURL: base, Token: tok, Limiter: lim})
		if err != nil {
			t.Fatal(err)
		}
		id, err := c.BudgetIdentity(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if id != "user:"+cfapitest.DefaultUserID {
			t.Fatalf("identity %q", id)
		}
		cfg := testConfig()
		cfg.Identity = id
		ps = append(ps, newProc(t, tok[:5], natsURL, base, tok, cfg))
	}
	if ps[0].src.Key() != ps[1].src.Key() || ps[0].src.Key() != budget.KeyForIdentity("user:"+cfapitest.DefaultUserID) {
		t.Fatalf("keys %s and %s, want one per user", ps[0].src.Key(), ps[1].src.Key())
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range ps {
		p.hammer(ctx, &wg, goroutines)
	}
	waitRequests(t, func() int { return srv.Stats().Total }, 4*testBudget)
	cancel()
	wg.Wait()
	f := measure(t, srv, testWindow)
	t.Logf("two tokens of one user: %d requests, busiest window %d, %d × 429", f.requests, f.peak, f.throttled)
	if f.throttled != 0 || f.peak > testBudget {
		t.Errorf("busiest window %d, %d × 429", f.peak, f.throttled)
	}
}
