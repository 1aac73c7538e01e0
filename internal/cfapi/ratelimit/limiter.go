package ratelimit

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
// It is a local gate in front of a TokenSource. The source decides how many
// requests may go and when (TokenBucket for one process, a shared source
// such as internal/jobs/budget for every process that uses the token); the
// gate decides which waiting caller gets each token and holds everybody
// back during a pause:
//
//   - A waiting live request always gets the next token before any waiting
//     backfill request (WithPriority); callers of one priority are served
//     in arrival order.
//   - A 429 pauses the whole limiter (Pause), not only the request that got
//     it, and callers already queued for a token wait for the pause too. The
//     pause is handed to the source, so a shared source pauses every
//     process.
//   - A separate cap bounds concurrent writes, since concurrent uploads
//     across many scripts trigger 10013 errors.
type Limiter struct {
	src    TokenSource
	budget int
	window time.Duration
	writes chan struct{}
	hooks  LimiterHooks

	mu          sync.Mutex
	pausedUntil time.Time
	resume      chan struct{} // closed and replaced when a pause is extended
	queues      [numPriorities][]*waiter
	pumping     bool               // a pump goroutine is running
	stopTake    context.CancelFunc // cancels the pump's Take when nobody waits any more
}

// TokenSource hands out permissions to send one request each. An
// implementation must guarantee that no interval of the window's length
// sees more than the budget of permissions used, counting every Limiter
// that draws from it. Implementations are safe for concurrent use.
type TokenSource interface {
	// Take blocks until one request may be sent now, or until ctx ends
	// (then it returns ctx's error and grants nothing). demand is how many
	// callers are waiting, a hint for sources that hand out tokens in
	// blocks. A permission must be used at once: the Limiter passes it
	// straight to a caller.
	Take(ctx context.Context, demand int) error
	// Pause records that the API refused a request and asked to wait
	// until until. A source shared by several processes passes it on so
	// that every process holds back; Take does not grant tokens before it
	// ends. A source used by one Limiter only may ignore it, since the
	// Limiter holds its own callers back.
	Pause(until time.Time)
	// PausedUntil returns the end of the pause in force (zero or past when
	// none), including pauses set by other processes.
	PausedUntil() time.Time
	// Budget returns the budget the source enforces: requests per window.
	Budget() (requests int, window time.Duration)
	// Burst returns how many requests may pass back to back.
	Burst() int
	// Available returns how many tokens could be taken now without
	// waiting, as sampled at the call (for metrics).
	Available() float64
}

// Priority orders waiting callers of one Limiter for the next token.
type Priority int

// The priorities, most urgent first. The zero value is PriorityLive.
const (
	// PriorityLive is work caused by live events; the default.
	PriorityLive Priority = iota
	// PriorityBackfill is bulk backfill work: it gets a token only when no
	// live request is waiting.
	PriorityBackfill

	numPriorities = 2
)

// String returns "live" or "backfill".
func (p Priority) String() string {
	if p == PriorityBackfill {
		return "backfill"
	}
	return "live"
}

type priorityKey struct{}

// WithPriority returns a context whose API requests wait for the budget
// with priority p. Requests without one are PriorityLive.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// PriorityFrom returns the priority carried by ctx (PriorityLive when none
// or unknown).
func PriorityFrom(ctx context.Context) Priority {
	if p, ok := ctx.Value(priorityKey{}).(Priority); ok && p >= 0 && p < numPriorities {
		return p
	}
	return PriorityLive
}

// LimiterHooks observe a Limiter. Every field is optional; hooks must be
// fast and safe for concurrent use.
type LimiterHooks struct {
	// PauseCapped is called when Pause is asked for longer than the window
	// (an absurd Retry-After) and pauses for the window instead.
	PauseCapped func(requested, applied time.Duration)
}

// LimiterOption configures a Limiter.
type LimiterOption func(*Limiter)

// WithLimiterHooks sets the limiter's hooks.
func WithLimiterHooks(h LimiterHooks) LimiterOption {
	return func(l *Limiter) { l.hooks = h }
}

// DefaultBudget and DefaultWindow are the default request budget: 1,100
// requests per 5 minutes, 100 below the API's 1,200 for headroom.
const (
	DefaultBudget          = 1100
	DefaultWindow          = 5 * time.Minute
	DefaultMaxWrites       = 4
	DefaultRateLimitString = "1100/5m"
)

// NewLimiter returns a limiter for one process: a TokenBucket that lets at
// most budget requests through in any interval of length window, with at
// most maxWrites writes in flight (0 means DefaultMaxWrites).
func NewLimiter(budget int, window time.Duration, maxWrites int, opts ...LimiterOption) (*Limiter, error) {
	tb, err := NewTokenBucket(budget, window)
	if err != nil {
		return nil, err
	}
	return NewSharedLimiter(tb, maxWrites, opts...)
}

// NewSharedLimiter returns a limiter that draws its tokens from src, with
// at most maxWrites writes in flight (0 means DefaultMaxWrites). Use it
// with a source shared by every process that uses the API token.
func NewSharedLimiter(src TokenSource, maxWrites int, opts ...LimiterOption) (*Limiter, error) {
	if src == nil {
		return nil, fmt.Errorf("rate limiter: token source is nil")
	}
	budget, window := src.Budget()
	if budget < 2 || window <= 0 {
		return nil, fmt.Errorf("rate limiter: token source has budget %d per %s; want at least 2 per positive window", budget, window)
	}
	if maxWrites <= 0 {
		maxWrites = DefaultMaxWrites
	}
	l := &Limiter{
		src:    src,
		budget: budget,
		window: window,
		writes: make(chan struct{}, maxWrites),
		resume: make(chan struct{}),
	}
	for _, o := range opts {
		o(l)
	}
	return l, nil
}

// Source returns the token source the limiter draws from.
func (l *Limiter) Source() TokenSource { return l.src }

// Budget returns the budget and window the limiter enforces.
func (l *Limiter) Budget() (int, time.Duration) { return l.budget, l.window }

// Burst returns how many requests may pass back to back.
func (l *Limiter) Burst() int { return l.src.Burst() }

// Available returns the tokens the source could hand out now without
// waiting (sampled; for a gauge).
func (l *Limiter) Available() float64 { return l.src.Available() }

// Paused reports whether a pause is in force, set here or, for a shared
// source, by another process.
func (l *Limiter) Paused() bool { return time.Now().Before(l.PausedUntil()) }

// Waiting returns how many callers of priority p are queued for a token.
func (l *Limiter) Waiting(p Priority) int {
	if p < 0 || p >= numPriorities {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queues[p])
}

// waiter is one caller queued in Wait. ready is closed when it is granted
// a token (granted) or when the source fails for good (err).
type waiter struct {
	ready   chan struct{}
	granted bool
	err     error
}

// Wait blocks until a request may be sent: until any pause is over and the
// source grants a token to this caller, ahead of every waiting caller of a
// lower priority (PriorityFrom(ctx)). A pause that begins while the caller
// is queued holds it back too (a token taken meanwhile is spent and another
// one taken after the pause). It returns how long it waited, or the
// context's error.
func (l *Limiter) Wait(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	w := &waiter{ready: make(chan struct{})}
	p := PriorityFrom(ctx)
	l.mu.Lock()
	l.queues[p] = append(l.queues[p], w)
	if !l.pumping {
		l.pumping = true
		go l.pump()
	}
	l.mu.Unlock()

	select {
	case <-w.ready:
		return time.Since(start), w.err
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w.granted {
		// Granted as the context ended: the token is spent unused, which
		// only ever leaves the budget under-used.
		return time.Since(start), ctx.Err()
	}
	for i, q := range l.queues[p] {
		if q == w {
			l.queues[p] = append(l.queues[p][:i], l.queues[p][i+1:]...)
			break
		}
	}
	if l.waitingLocked() == 0 && l.stopTake != nil {
		l.stopTake()
	}
	return time.Since(start), ctx.Err()
}

func (l *Limiter) waitingLocked() int {
	n := 0
	for _, q := range l.queues {
		n += len(q)
	}
	return n
}

// pump takes tokens from the source one at a time while callers wait and
// hands each to the most urgent caller waiting when it arrives. One pump
// runs per limiter at a time; it ends when no caller is left.
func (l *Limiter) pump() {
	for {
		l.mu.Lock()
		demand := l.waitingLocked()
		if demand == 0 {
			l.pumping = false
			l.mu.Unlock()
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		l.stopTake = cancel
		l.mu.Unlock()

		err := l.waitPause(ctx)
		if err == nil {
			err = l.src.Take(ctx, demand)
		}
		cancelled := ctx.Err() != nil
		l.mu.Lock()
		l.stopTake = nil
		l.mu.Unlock()
		cancel()
		switch {
		case cancelled:
			continue // every caller left; look again
		case err != nil:
			l.failAll(err)
			continue
		case time.Now().Before(l.PausedUntil()):
			continue // a pause began meanwhile: spend the token, wait it out
		}
		l.mu.Lock()
		for p := range l.queues {
			if len(l.queues[p]) > 0 {
				w := l.queues[p][0]
				l.queues[p] = l.queues[p][1:]
				w.granted = true
				close(w.ready)
				break
			}
		}
		// With nobody left (all gave up during Take) the token is spent.
		l.mu.Unlock()
	}
}

// failAll releases every waiting caller with err: the source failed for
// good (for example it was closed).
func (l *Limiter) failAll(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for p := range l.queues {
		for _, w := range l.queues[p] {
			w.err = fmt.Errorf("rate budget: %w", err)
			close(w.ready)
		}
		l.queues[p] = nil
	}
}

// waitPause blocks until no pause of this limiter is in force.
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

// Pause stops every caller of Wait for d (the server's Retry-After) and
// hands the pause to the source, which shares it with every process that
// draws from it. A d longer than the window is cut to the window (the API
// never needs longer; an absurd Retry-After must not stop the reconciler
// for hours) and reported through LimiterHooks.PauseCapped. A shorter pause
// never shortens a longer one already in force. It returns the pause
// applied.
func (l *Limiter) Pause(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	if d > l.window {
		if l.hooks.PauseCapped != nil {
			l.hooks.PauseCapped(d, l.window)
		}
		d = l.window
	}
	until := time.Now().Add(d)
	l.mu.Lock()
	if until.After(l.pausedUntil) {
		l.pausedUntil = until
		close(l.resume)
		l.resume = make(chan struct{})
	}
	l.mu.Unlock()
	l.src.Pause(until)
	return d
}

// PausedUntil returns the end of the current pause (zero or past when
// none), whether set here or by another process sharing the source.
func (l *Limiter) PausedUntil() time.Time {
	l.mu.Lock()
	until := l.pausedUntil
	l.mu.Unlock()
	if s := l.src.PausedUntil(); s.After(until) {
		return s
	}
	return until
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

// BurstFor returns the burst that every source allows for a budget: a
// fiftieth of it, between 1 and 20 requests.
func BurstFor(budget int) int { return min(max(budget/50, 1), 20) }

// TokenBucket is the TokenSource of one process: a token bucket in memory.
//
// The API counts requests per token in windows (1,200 per 5 minutes) and
// blocks the token for five minutes when a window goes over. A token bucket
// whose burst is the whole budget would let the budget through at once and
// the budget again over the next window, so TokenBucket sizes the bucket to
// guarantee that no interval of the window's length ever sees more than the
// budget: with burst b and refill rate r, at most b + r·window requests pass
// in any such interval, and r is set to (budget − b)/window.
type TokenBucket struct {
	lim    *rate.Limiter
	budget int
	window time.Duration
}

// NewTokenBucket returns a bucket that lets at most budget requests
// through in any interval of length window.
func NewTokenBucket(budget int, window time.Duration) (*TokenBucket, error) {
	if budget < 2 {
		return nil, fmt.Errorf("rate limit budget must be at least 2 requests, got %d", budget)
	}
	if window <= 0 {
		return nil, fmt.Errorf("rate limit window must be positive, got %s", window)
	}
	burst := BurstFor(budget)
	// A hair under the exact rate so that float rounding in the bucket can
	// never add a request at a window's edge.
	perSec := float64(budget-burst) / window.Seconds() * 0.999
	return &TokenBucket{lim: rate.NewLimiter(rate.Limit(perSec), burst), budget: budget, window: window}, nil
}

// Take waits for a token of the bucket.
func (b *TokenBucket) Take(ctx context.Context, _ int) error { return b.lim.Wait(ctx) }

// Pause does nothing: the bucket serves one process, whose Limiter holds
// its callers back itself.
func (b *TokenBucket) Pause(time.Time) {}

// PausedUntil returns the zero time: see Pause.
func (b *TokenBucket) PausedUntil() time.Time { return time.Time{} }

// Budget returns the budget and window the bucket enforces.
func (b *TokenBucket) Budget() (int, time.Duration) { return b.budget, b.window }

// Burst returns how many requests may pass back to back.
func (b *TokenBucket) Burst() int { return b.lim.Burst() }

// Rate returns the refill rate in tokens per second.
func (b *TokenBucket) Rate() float64 { return float64(b.lim.Limit()) }

// Available returns the whole tokens in the bucket now (0 while callers
// are queued for the next one).
func (b *TokenBucket) Available() float64 { return max(0, b.lim.Tokens()) }

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
