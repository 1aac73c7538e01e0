package cfapi_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
)

// The tests in this file measure real time through the emulator, so they
// do not call t.Parallel: they run alone in this test binary, before the
// parallel tests resume.

// hammer runs calls concurrently, n per goroutine, and returns the first
// error.
func hammer(goroutines, n int, call func(g int) error) error {
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if err := call(g); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// maxInWindow is the largest number of times within any interval of length
// d; times must be sorted (the same measure as Stats.MaxRequestsInWindow).
func maxInWindow(times []time.Time, d time.Duration) int {
	best, j := 0, 0
	for i, t := range times {
		for t.Sub(times[j]) >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// TestLimiterKeepsBudgetAcrossGoroutines: one limiter of 30 requests per
// second shared by 32 goroutines never lets more than 30 requests reach the
// emulator in any one-second interval, so the emulator, enforcing the same
// 30 per second, never throttles.
func TestLimiterKeepsBudgetAcrossGoroutines(t *testing.T) {
	const (
		budget     = 30
		window     = time.Second
		goroutines = 32
		callsEach  = 3 // 96 requests: about three windows' worth
	)
	lim, err := ratelimit.NewLimiter(budget, window, 4)
	if err != nil {
		t.Fatal(err)
	}
	fx := setupWith(t, cfapitest.Options{RateLimit: budget, RateWindow: window},
		cfapi.Config{Limiter: lim, Retry: cfapi.RetryPolicy{MaxAttempts: 1}})
	fx.seed(t, dispatchNS, goroutines)

	err = hammer(goroutines, callsEach, func(g int) error {
		ref := cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: cfapitest.TenantName(g + 1)}
		_, err := fx.client.GetSettings(context.Background(), ref)
		return err
	})
	if err != nil {
		t.Errorf("a call failed (no retries here): %v", err)
	}
	st := fx.stats(t)
	if st.Total != goroutines*callsEach {
		t.Errorf("emulator saw %d requests, want %d", st.Total, goroutines*callsEach)
	}
	peak := st.MaxRequestsInWindow(window)
	// The limiter spaces budget+1 requests over 1.0355 s, so arrivals may
	// bunch by about 35 ms (scheduling, connection reuse) before a window
	// holds one request too many. Log how much of that slack was used.
	arr := st.Arrivals()
	tightest := time.Duration(1<<63 - 1)
	for i := budget; i < len(arr); i++ {
		tightest = min(tightest, arr[i].Sub(arr[i-budget]))
	}
	t.Logf("busiest %s: %d requests (budget %d); tightest %d requests spanned %s", window, peak, budget, budget+1, tightest)
	if peak > budget {
		t.Errorf("%d requests arrived within %s, over the budget of %d", peak, window, budget)
	}
	if st.Throttled != 0 {
		t.Errorf("emulator throttled %d requests", st.Throttled)
	}
}

// TestNaiveBucketExceedsBudget is the negative control of the test above:
// a plain token bucket with the whole budget as its burst (30 at once, then
// 30 per second) lets about twice the budget through in its first second.
// This is why ratelimit.Limiter sizes its bucket as it does.
func TestNaiveBucketExceedsBudget(t *testing.T) {
	const budget, window = 30, time.Second

	t.Run("computed", func(t *testing.T) {
		// rate.Limiter takes explicit times, so no clock is involved: the
		// first 30 reservations are immediate and the next ones come every
		// 1/30 s, so 59 fall within the first second.
		naive := rate.NewLimiter(rate.Limit(budget), budget)
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var admitted []time.Time
		for range 3 * budget {
			admitted = append(admitted, now.Add(naive.ReserveN(now, 1).DelayFrom(now)))
		}
		if got := maxInWindow(admitted, window); got <= budget {
			t.Fatalf("naive bucket admits at most %d per %s, expected more than %d", got, window, budget)
		} else {
			t.Logf("naive bucket admits %d within %s", got, window)
		}
	})

	t.Run("measured by the emulator", func(t *testing.T) {
		// The emulator does not limit here; the client's own limiter is far
		// above the rate, so the naive bucket alone paces the requests. 31
		// requests pass within 1/30 s of each other, so this holds however
		// slow the machine is.
		fx := setup(t)
		fx.seed(t, dispatchNS, 1)
		naive := rate.NewLimiter(rate.Limit(budget), budget)
		ref := cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: cfapitest.TenantName(1)}
		err := hammer(32, 2, func(int) error {
			if err := naive.Wait(context.Background()); err != nil {
				return err
			}
			_, err := fx.client.GetSettings(context.Background(), ref)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		peak := fx.stats(t).MaxRequestsInWindow(window)
		t.Logf("naive bucket: busiest %s had %d requests (budget %d)", window, peak, budget)
		if peak <= budget {
			t.Errorf("naive bucket stayed within the budget (%d in %s); the control proves nothing", peak, window)
		}
	})
}

// TestRateLimit429PausesEveryone: the emulator allows 5 requests per second
// while the client's limiter would allow 100, so the client runs into 429s.
// Every call still succeeds, and a 429 pauses the shared limiter for
// Retry-After, holding back every goroutine rather than only the one that
// got it.
func TestRateLimit429PausesEveryone(t *testing.T) {
	const (
		serverLimit  = 5
		serverWindow = time.Second
		goroutines   = 16 // one call each: four server windows
	)
	lim, err := ratelimit.NewLimiter(100, time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	// releasedWhilePaused counts attempts that the limiter let go while a
	// pause was in force. BudgetWait runs right after Limiter.Wait returns.
	var releasedWhilePaused, rateLimited atomic.Int32
	fx := setupWith(t, cfapitest.Options{RateLimit: serverLimit, RateWindow: serverWindow}, cfapi.Config{
		Limiter: lim,
		Retry:   cfapi.RetryPolicy{MaxAttempts: 20, InitialInterval: 5 * time.Millisecond, MaxInterval: 50 * time.Millisecond},
		Hooks: cfapi.Hooks{
			BudgetWait: func(string, time.Duration) {
				if time.Now().Before(lim.PausedUntil()) {
					releasedWhilePaused.Add(1)
				}
			},
			RateLimited: func(_ string, pause time.Duration) {
				rateLimited.Add(1)
				if pause <= 0 || pause > serverWindow {
					t.Errorf("pause %s, want the emulator's Retry-After (at most %s)", pause, serverWindow)
				}
			},
		},
	})
	fx.seed(t, dispatchNS, goroutines)

	err = hammer(goroutines, 1, func(g int) error {
		ref := cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: cfapitest.TenantName(g + 1)}
		_, err := fx.client.GetSettings(context.Background(), ref)
		return err
	})
	if err != nil {
		t.Fatalf("a call failed despite retries: %v", err)
	}
	st := fx.stats(t)
	ok := st.Requests[cfapitest.EndpointGetSettings][200]
	t.Logf("%d calls, %d requests, %d throttled, %d released during a pause", goroutines, st.Total, st.Throttled, releasedWhilePaused.Load())
	if ok != goroutines {
		t.Errorf("%d successful requests, want %d", ok, goroutines)
	}
	if st.Throttled == 0 {
		t.Fatal("no 429: the test did not exercise the pause")
	}
	if int(rateLimited.Load()) != st.Throttled {
		t.Errorf("client saw %d 429s, emulator sent %d", rateLimited.Load(), st.Throttled)
	}
	// Once a 429 has paused the limiter, no goroutine may be let go until
	// the pause ends. A goroutine that was already queued for a token when
	// the 429 arrived must wait for the pause too. (An attempt the limiter
	// released a moment before another goroutine's 429 arrived is merely in
	// flight and is not counted here: the pause did not exist yet.)
	if n := releasedWhilePaused.Load(); n != 0 {
		t.Errorf("the limiter let %d attempts go while paused", n)
	}
	// 429s come only from requests already in flight when the first 429 of
	// a server window arrives, a handful per window. Without the shared
	// pause every waiting goroutine would keep retrying on its own backoff
	// (5–50 ms) for the whole second and collect many 429s each. The bound
	// is loose on purpose so that a slow machine does not fail it.
	if st.Throttled >= 2*goroutines {
		t.Errorf("%d 429s for %d goroutines: the goroutines were not held back", st.Throttled, goroutines)
	}
}

// TestPauseCappedAtWindow: a Retry-After longer than the window pauses for
// the window, and the hook reports it; the client's RateLimited hook sees
// the pause applied.
func TestPauseCappedAtWindow(t *testing.T) {
	var requested, applied atomic.Int64
	lim, err := ratelimit.NewLimiter(100, 2*time.Second, 0, ratelimit.WithLimiterHooks(ratelimit.LimiterHooks{
		PauseCapped: func(r, a time.Duration) { requested.Store(int64(r)); applied.Store(int64(a)) },
	}))
	if err != nil {
		t.Fatal(err)
	}
	var seen atomic.Int64
	fx := setupWith(t, cfapitest.Options{}, cfapi.Config{Limiter: lim, Retry: cfapi.RetryPolicy{MaxAttempts: 1},
		Hooks: cfapi.Hooks{RateLimited: func(_ string, d time.Duration) { seen.Store(int64(d)) }}})
	fx.seed(t, dispatchNS, 1)
	fx.srv.FailNext(1, 429, cfapitest.CodeRateLimited, 3*time.Hour)
	before := time.Now()
	_, err = fx.client.GetSettings(context.Background(), cfapi.ScriptRef{AccountID: account, Namespace: dispatchNS, Script: cfapitest.TenantName(1)})
	var apiErr *cfapi.APIError
	if !errors.As(err, &apiErr) || !apiErr.RateLimited() {
		t.Fatalf("err = %v, want the 429", err)
	}
	if time.Duration(requested.Load()) != 3*time.Hour || time.Duration(applied.Load()) != 2*time.Second {
		t.Errorf("PauseCapped(%s, %s), want (3h, 2s)", time.Duration(requested.Load()), time.Duration(applied.Load()))
	}
	if d := time.Duration(seen.Load()); d != 2*time.Second {
		t.Errorf("RateLimited hook saw %s, want the capped 2s", d)
	}
	if until := lim.PausedUntil(); until.After(time.Now().Add(2*time.Second)) || until.Before(before) {
		t.Errorf("paused until %s, want within 2s of %s", until.Format(time.StampMilli), before.Format(time.StampMilli))
	}
	if !lim.Paused() {
		t.Error("limiter not paused")
	}
	// Pause without a 429: shorter pauses do not shorten it, and Pause
	// returns what it applied.
	if got := lim.Pause(time.Millisecond); got != time.Millisecond {
		t.Errorf("Pause(1ms) = %s", got)
	}
	if !lim.Paused() {
		t.Error("a shorter pause ended the longer one")
	}
}
