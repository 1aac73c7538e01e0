package cfapi

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is the one request budget shared by every caller of an API token.
//
// The API counts requests per token in windows (1,200 per 5 minutes) and
// blocks the token for five minutes when a window goes over. A token bucket
// whose burst is the whole budget would let the budget through at once and
// the budget again over the next window, so Limiter sizes the bucket to
// guarantee that no interval of the window's length ever sees more than the
// budget: with burst b and refill rate r, at most b + r·window requests pass
// in any such interval, and r is set to (budget − b)/window.
//
// A 429 pauses the whole limiter (Pause), not only the request that got it.
// A separate cap bounds concurrent writes, since concurrent uploads across
// many scripts trigger 10013 errors.
type Limiter struct {
	lim    *rate.Limiter
	budget int
	window time.Duration
	writes chan struct{}

	mu          sync.Mutex
	pausedUntil time.Time
	resume      chan struct{} // closed and replaced when a pause is extended
}

// DefaultBudget and DefaultWindow are the default request budget: 1,100
// requests per 5 minutes, 100 below the API's 1,200 for headroom.
const (
	DefaultBudget          = 1100
	DefaultWindow          = 5 * time.Minute
	DefaultMaxWrites       = 4
	DefaultRateLimitString = "1100/5m"
)

// NewLimiter returns a limiter that lets at most budget requests through in
// any interval of length window, with at most maxWrites writes in flight
// (0 means DefaultMaxWrites).
func NewLimiter(budget int, window time.Duration, maxWrites int) (*Limiter, error) {
	if budget < 2 {
		return nil, fmt.Errorf("rate limit budget must be at least 2 requests, got %d", budget)
	}
	if window <= 0 {
		return nil, fmt.Errorf("rate limit window must be positive, got %s", window)
	}
	if maxWrites <= 0 {
		maxWrites = DefaultMaxWrites
	}
	burst := min(max(budget/50, 1), 20)
	// A hair under the exact rate so that float rounding in the bucket can
	// never add a request at a window's edge.
	perSec := float64(budget-burst) / window.Seconds() * 0.999
	return &Limiter{
		lim:    rate.NewLimiter(rate.Limit(perSec), burst),
		budget: budget,
		window: window,
		writes: make(chan struct{}, maxWrites),
		resume: make(chan struct{}),
	}, nil
}

// Budget returns the budget and window the limiter enforces.
func (l *Limiter) Budget() (int, time.Duration) { return l.budget, l.window }

// Burst returns how many requests may pass back to back.
func (l *Limiter) Burst() int { return l.lim.Burst() }

// Wait blocks until a request may be sent: until any pause is over and the
// bucket has a token. A pause that begins while the caller is queued for a
// token holds it back too (the token is spent and another one taken after
// the pause). It returns how long it waited, or the context's error.
func (l *Limiter) Wait(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	for {
		if err := l.waitPause(ctx); err != nil {
			return time.Since(start), err
		}
		if err := l.lim.Wait(ctx); err != nil {
			return time.Since(start), err
		}
		if !time.Now().Before(l.PausedUntil()) {
			return time.Since(start), nil
		}
	}
}

// waitPause blocks until no pause is in force.
func (l *Limiter) waitPause(ctx context.Context) error {
	for {
		l.mu.Lock()
		until, resume := l.pausedUntil, l.resume
		l.mu.Unlock()
		d := time.Until(until)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		case <-resume: // pause changed; look again
			t.Stop()
		}
	}
}

// Pause stops every caller of Wait for d (the server's Retry-After). A
// shorter pause never shortens a longer one already in force.
func (l *Limiter) Pause(d time.Duration) {
	if d <= 0 {
		return
	}
	until := time.Now().Add(d)
	l.mu.Lock()
	defer l.mu.Unlock()
	if until.After(l.pausedUntil) {
		l.pausedUntil = until
		close(l.resume)
		l.resume = make(chan struct{})
	}
}

// PausedUntil returns the end of the current pause (zero or past when none).
func (l *Limiter) PausedUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pausedUntil
}

// AcquireWrite takes one of the concurrent-write slots; call release when
// the write is done.
func (l *Limiter) AcquireWrite(ctx context.Context) (release func(), err error) {
	select {
	case l.writes <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-l.writes }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ParseRate parses a budget such as "1100/5m" or "40/1s" (requests/duration).
func ParseRate(s string) (budget int, window time.Duration, err error) {
	n, d, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q: want REQUESTS/DURATION, e.g. 1100/5m", s)
	}
	budget, err = strconv.Atoi(strings.TrimSpace(n))
	if err != nil || budget < 2 {
		return 0, 0, fmt.Errorf("rate %q: requests must be an integer of at least 2", s)
	}
	window, err = time.ParseDuration(strings.TrimSpace(d))
	if err != nil || window <= 0 {
		return 0, 0, fmt.Errorf("rate %q: duration must be positive like 5m or 300s", s)
	}
	return budget, window, nil
}
