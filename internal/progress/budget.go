package progress

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/jobs/budget"
)

// Budget is what an ETA and a wait notice read of a process's API budget.
type Budget interface {
	// Rate is the requests per second the process may keep up.
	Rate() float64
	// Available is the requests that may be sent now without waiting.
	Available() float64
	// PausedUntil is the end of the pause in force (zero or past: none).
	PausedUntil() time.Time
	// Waiting is the callers waiting for a request.
	Waiting() int
	// Describe names the budget and what spends or pauses it now.
	Describe(now time.Time) string
}

// LimiterBudget is the Budget of lim. On the shared budget
// (*budget.Source) its rate is what the processes may keep up under the
// API's latest view of the user's budget (budget.Source.AllowedRate:
// less the reserve and the other tools' use) while one is live, else the
// budget in force; on a budget of the process alone, its --rate-limit.
func LimiterBudget(lim *ratelimit.Limiter) Budget { return limiterBudget{lim} }

type limiterBudget struct{ lim *ratelimit.Limiter }

func (b limiterBudget) shared() (*budget.Source, bool) {
	src, ok := b.lim.Source().(*budget.Source)
	return src, ok
}

func (b limiterBudget) Rate() float64 {
	src, ok := b.shared()
	if !ok {
		n, w := b.lim.Source().Budget()
		return float64(n) / w.Seconds()
	}
	if _, ok := src.APIView(); ok {
		return src.AllowedRate()
	}
	n, w := src.Budget()
	return float64(n) / w.Seconds()
}

func (b limiterBudget) Available() float64     { return b.lim.Available() }
func (b limiterBudget) PausedUntil() time.Time { return b.lim.PausedUntil() }
func (b limiterBudget) Waiting() int {
	return b.lim.Waiting(ratelimit.PriorityLive) + b.lim.Waiting(ratelimit.PriorityBackfill)
}

func (b limiterBudget) Describe(now time.Time) string {
	src, ok := b.shared()
	if !ok {
		n, w := b.lim.Source().Budget()
		return fmt.Sprintf("budget %d/%s of this process alone%s", n, w, pauseText(b.PausedUntil(), now))
	}
	n, w := src.Budget()
	s := fmt.Sprintf("shared budget %d/%s (key %s)", n, w, src.Key())
	if p := pauseText(b.PausedUntil(), now); p != "" {
		return s + p
	}
	if v, ok := src.APIView(); ok && v.Quota > 0 {
		return s + fmt.Sprintf(": the API's latest view leaves %d of %d requests, about %d of them spent by other tools of this user", v.Remaining, v.Quota, v.Others)
	}
	return s + fmt.Sprintf(": spent by the processes that share it (%d requests held by this one)", src.Stats().Held)
}

// pauseText says what pauses a budget until until, or "" when nothing does.
func pauseText(until, now time.Time) string {
	if !until.After(now) {
		return ""
	}
	return fmt.Sprintf(": paused for %s, until %s, after the API answered 429 (every process sharing the budget holds back)",
		until.Sub(now).Round(time.Second), until.UTC().Format(time.TimeOnly))
}

// BudgetETA returns the time a number of requests takes under b: the
// pause in force, then what the available requests do not cover at the
// budget's rate. now is the clock (nil: time.Now).
func BudgetETA(b Budget, now func() time.Time) func(requests float64) time.Duration {
	if now == nil {
		now = time.Now
	}
	return func(requests float64) time.Duration {
		r := b.Rate()
		if r <= 0 {
			return 0
		}
		var d time.Duration
		if t, pu := now(), b.PausedUntil(); pu.After(t) {
			d = pu.Sub(t)
		} else {
			requests -= b.Available()
		}
		if requests > 0 {
			d += time.Duration(requests / r * float64(time.Second))
		}
		return d
	}
}

// WaitNotice writes one line when a tool has waited for its budget
// longer than After: the budget, and what spends or pauses it. It writes
// once per wait (the wait ends when nobody waits), and at most once per
// Every.
type WaitNotice struct {
	Tool   string
	Budget Budget
	Out    io.Writer
	Now    func() time.Time
	// After is how long a wait lasts before the notice (5s when zero);
	// Every the least time between two notices (1m when zero).
	After, Every time.Duration

	mu       sync.Mutex
	since    time.Time // start of the wait in progress; zero: none
	noticed  bool      // the wait in progress was noticed
	lastSent time.Time
}

// Check samples the budget once; Watch calls it every second.
func (n *WaitNotice) Check() {
	after, every := n.After, n.Every
	if after <= 0 {
		after = 5 * time.Second
	}
	if every <= 0 {
		every = time.Minute
	}
	now := n.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.Budget.Waiting() == 0 {
		n.since, n.noticed = time.Time{}, false
		return
	}
	if n.since.IsZero() {
		n.since = now
	}
	if n.noticed || now.Sub(n.since) < after || (!n.lastSent.IsZero() && now.Sub(n.lastSent) < every) {
		return
	}
	n.noticed, n.lastSent = true, now
	fmt.Fprintf(n.Out, "%s: waiting %s for the API budget: %s\n", n.Tool, now.Sub(n.since).Round(time.Second), n.Budget.Describe(now))
}

// Watch checks n every second until the returned stop is called or ctx
// ends.
func (n *WaitNotice) Watch(ctx context.Context) (stop func()) {
	if n.Now == nil {
		n.Now = time.Now
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n.Check()
			}
		}
	}()
	return func() { cancel(); <-done }
}
