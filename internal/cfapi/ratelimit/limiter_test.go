package ratelimit_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
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
	lim, err := ratelimit.NewSharedLimiter(src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var served []string
	start := func(name string, p ratelimit.Priority) {
		go func() {
			if _, err := lim.Wait(ratelimit.WithPriority(context.Background(), p)); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			served = append(served, name)
			mu.Unlock()
		}()
	}
	for i, n := range []string{"b1", "b2", "b3", "b4"} {
		start(n, ratelimit.PriorityBackfill)
		testutil.Eventually(t, 5*time.Second, func() bool { return lim.Waiting(ratelimit.PriorityBackfill) == i+1 }, "%s queued", n)
	}
	for i, n := range []string{"l1", "l2"} {
		start(n, ratelimit.PriorityLive)
		testutil.Eventually(t, 5*time.Second, func() bool { return lim.Waiting(ratelimit.PriorityLive) == i+1 }, "%s queued", n)
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
	start("l3", ratelimit.PriorityLive)
	testutil.Eventually(t, 5*time.Second, func() bool { return lim.Waiting(ratelimit.PriorityLive) == 1 }, "l3 queued")
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
	lim, err := ratelimit.NewLimiter(100, time.Second, 0)
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
			bctx := ratelimit.WithPriority(ctx, ratelimit.PriorityBackfill)
			for {
				if _, err := lim.Wait(bctx); err != nil {
					return
				}
				backfill.Add(1)
			}
		}()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return lim.Waiting(ratelimit.PriorityBackfill) >= 19 }, "backfill callers queued")
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

func TestLimiterParseAndBurst(t *testing.T) {
	b, w, err := ratelimit.ParseRate("1100/5m")
	if err != nil || b != 1100 || w != 5*time.Minute {
		t.Fatalf("ParseRate = %d %s %v", b, w, err)
	}
	for _, bad := range []string{"", "1100", "x/5m", "1/5m", "10/0s", "10/-1s", "10/abc"} {
		if _, _, err := ratelimit.ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
	l, _ := ratelimit.NewLimiter(1100, 5*time.Minute, 0)
	// Burst plus a full window of refill must stay within the budget.
	perWindow := l.Source().(*ratelimit.TokenBucket).Rate() * (5 * time.Minute).Seconds()
	if float64(l.Burst())+perWindow > 1100 {
		t.Fatalf("burst %d + refill %.1f exceeds the budget", l.Burst(), perWindow)
	}
}

func TestAcquireWriteCap(t *testing.T) {
	l, _ := ratelimit.NewLimiter(100, time.Second, 2)
	r1, _ := l.AcquireWrite(context.Background())
	r2, _ := l.AcquireWrite(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.AcquireWrite(ctx); err == nil {
		t.Fatal("third write slot granted with a cap of 2")
	}
	r1()
	r1() // idempotent
	r3, err := l.AcquireWrite(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r2()
	r3()
}
