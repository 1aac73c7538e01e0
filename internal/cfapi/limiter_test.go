package cfapi_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/testutil"
)

// stepSource is a TokenSource that grants one token each time the test
// sends on tokens, so the test decides when the gate hands out tokens.
type stepSource struct{ tokens chan struct{} }

func (s stepSource) Take(ctx context.Context, _ int) error {
	select {
	case <-s.tokens:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (stepSource) Pause(time.Time)              {}
func (stepSource) PausedUntil() time.Time       { return time.Time{} }
func (stepSource) Budget() (int, time.Duration) { return 100, time.Second }
func (stepSource) Burst() int                   { return 1 }
func (stepSource) Available() float64           { return 0 }

// TestLiveBeforeBackfill: with backfill callers queued first and live
// callers after them, every token goes to a live caller while one waits,
// and callers of one priority are served in arrival order.
func TestLiveBeforeBackfill(t *testing.T) {
	src := stepSource{tokens: make(chan struct{})}
	lim, err := cfapi.NewSharedLimiter(src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var served []string
	start := func(name string, p cfapi.Priority) {
		go func() {
			if _, err := lim.Wait(cfapi.WithPriority(context.Background(), p)); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			served = append(served, name)
			mu.Unlock()
		}()
	}
	for i, n := range []string{"b1", "b2", "b3", "b4"} {
		start(n, cfapi.PriorityBackfill)
		testutil.Eventually(t, 5*time.Second, func() bool { return lim.Waiting(cfapi.PriorityBackfill) == i+1 }, "%s queued", n)
	}
	for i, n := range []string{"l1", "l2"} {
		start(n, cfapi.PriorityLive)
		testutil.Eventually(t, 5*time.Second, func() bool { return lim.Waiting(cfapi.PriorityLive) == i+1 }, "%s queued", n)
	}
	grant := func() string {
		t.Helper()
		mu.Lock()
		before := len(served)
		mu.Unlock()
		src.tokens <- struct{}{}
		var got string
		testutil.Eventually(t, 5*time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(served) > before {
				got = served[before]
				return true
			}
			return false
		}, "nobody served")
		return got
	}
	var order []string
	order = append(order, grant(), grant())
	// A live caller arriving while backfill still waits goes first too.
	start("l3", cfapi.PriorityLive)
	testutil.Eventually(t, 5*time.Second, func() bool { return lim.Waiting(cfapi.PriorityLive) == 1 }, "l3 queued")
	for range 5 {
		order = append(order, grant())
	}
	want := []string{"l1", "l2", "l3", "b1", "b2", "b3", "b4"}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("served %v, want %v", order, want)
		}
	}
}

// TestBackfillFloodDoesNotDelayLive: twenty backfill callers keep the real
// token bucket busy; each live call waits for at most the one token already
// on its way to a backfill caller when it queued.
func TestBackfillFloodDoesNotDelayLive(t *testing.T) {
	lim, err := cfapi.NewLimiter(100, time.Second, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var backfill atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bctx := cfapi.WithPriority(ctx, cfapi.PriorityBackfill)
			for {
				if _, err := lim.Wait(bctx); err != nil {
					return
				}
				backfill.Add(1)
			}
		}()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return lim.Waiting(cfapi.PriorityBackfill) >= 19 }, "backfill callers queued")
	worst := int64(0)
	for range 10 {
		before := backfill.Load()
		lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := lim.Wait(lctx)
		lcancel()
		if err != nil {
			cancel()
			t.Fatalf("live caller: %v (backfill callers got %d tokens meanwhile)", err, backfill.Load()-before)
		}
		worst = max(worst, backfill.Load()-before)
	}
	cancel()
	wg.Wait()
	t.Logf("backfill grants during one live wait: at most %d; backfill total %d", worst, backfill.Load())
	if worst > 1 {
		t.Errorf("%d backfill callers got a token while a live caller waited", worst)
	}
}

// TestPauseCappedAtWindow: a Retry-After longer than the window pauses for
// the window, and the hook reports it; the client's RateLimited hook sees
// the pause applied.
func TestPauseCappedAtWindow(t *testing.T) {
	var requested, applied atomic.Int64
	lim, err := cfapi.NewLimiter(100, 2*time.Second, 0, cfapi.WithLimiterHooks(cfapi.LimiterHooks{
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
