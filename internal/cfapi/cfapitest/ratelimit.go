package cfapitest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// rateLimit is the API's rate limit as the server applies it: the window
// (limiter) and the other tool that spends the same budget (othertool.go).
type rateLimit struct {
	lim         limiter
	other       otherTool
	now         func() time.Time
	omitHeaders bool // Options.OmitRateHeaders
	stats       *statsRecorder
}

// SetRateLimit changes the rate limit at runtime to n requests per fixed
// window and starts a new window; n = 0 turns it off.
func (s *Server) SetRateLimit(n int, window time.Duration) { s.rate.lim.set(n, window) }

// SetSlidingRateLimit changes the rate limit at runtime to a strict sliding
// window of n requests per window that blocks the token for block (0 means
// window) when exceeded (see Options.RateSliding); the history and any
// block are cleared. n = 0 turns the limit off.
func (s *Server) SetSlidingRateLimit(n int, window, block time.Duration) {
	s.rate.lim.setSliding(n, window, block)
}

// limiter is the API's rate limit, in one of two modes.
//
// Fixed window: the first request counted starts a window of the
// configured length, and every request beyond the budget inside that window
// is refused until the window ends.
//
// Sliding window: the arrival times of accepted requests within the last
// window are kept; a request that finds n of them blocks the token until
// block has passed, and every request is refused until then.
type limiter struct {
	mu      sync.Mutex
	n       int
	window  time.Duration
	sliding bool
	block   time.Duration

	start time.Time // fixed: start of the window
	count int       // fixed: requests counted in it

	accepted     []time.Time // sliding: accepted arrivals in the window, sorted
	blockedUntil time.Time   // sliding: end of the block in force
}

func (l *limiter) set(n int, window time.Duration) {
	l.mu.Lock()
	l.n, l.window, l.sliding, l.block = n, window, false, 0
	l.start, l.count, l.accepted, l.blockedUntil = time.Time{}, 0, nil, time.Time{}
	l.mu.Unlock()
}

func (l *limiter) setSliding(n int, window, block time.Duration) {
	if block <= 0 {
		block = window
	}
	l.mu.Lock()
	l.n, l.window, l.sliding, l.block = n, window, true, block
	l.start, l.count, l.accepted, l.blockedUntil = time.Time{}, 0, nil, time.Time{}
	l.mu.Unlock()
}

// verdict is the rate limit's answer to one request.
type verdict struct {
	ok        bool
	blocked   bool          // this request started a block (sliding mode)
	remaining int           // requests left in the window
	reset     time.Duration // until the window frees a request (or the block ends)
	n         int           // the limit; 0 when off
	window    time.Duration
}

// take counts a request arriving at now.
func (l *limiter) take(now time.Time) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n <= 0 || l.window <= 0 {
		return verdict{ok: true}
	}
	if l.sliding {
		return l.takeSliding(now)
	}
	if l.start.IsZero() || now.Sub(l.start) >= l.window || now.Before(l.start) {
		l.start, l.count = now, 0
	}
	l.count++
	return verdict{ok: l.count <= l.n, remaining: max(0, l.n-l.count), reset: l.start.Add(l.window).Sub(now), n: l.n, window: l.window}
}

func (l *limiter) takeSliding(now time.Time) verdict {
	v := verdict{n: l.n, window: l.window}
	if now.Before(l.blockedUntil) {
		v.reset = l.blockedUntil.Sub(now)
		return v
	}
	// Forget arrivals that left the window (now - window, now].
	drop := 0
	for drop < len(l.accepted) && now.Sub(l.accepted[drop]) >= l.window {
		drop++
	}
	l.accepted = l.accepted[drop:]
	if len(l.accepted) >= l.n {
		l.blockedUntil = now.Add(l.block)
		v.blocked, v.reset = true, l.block
		return v
	}
	// Concurrent requests may arrive here slightly out of order; keep the
	// times sorted so the window is exact.
	i := len(l.accepted)
	for i > 0 && l.accepted[i-1].After(now) {
		i--
	}
	l.accepted = slices.Insert(l.accepted, i, now)
	v.ok, v.remaining = true, l.n-len(l.accepted)
	v.reset = l.accepted[0].Add(l.window).Sub(now)
	return v
}

// apply counts the request and answers 429 code 971 when it is
// over the budget (or the token is blocked). It sets the Ratelimit and
// Ratelimit-Policy headers whenever the limit is on.
func (rl *rateLimit) apply(w http.ResponseWriter, now time.Time) bool {
	v := rl.lim.take(now)
	if v.n == 0 {
		return true
	}
	if !rl.omitHeaders {
		w.Header().Set("Ratelimit", fmt.Sprintf(`"default";r=%d;t=%d`, v.remaining, ceilSeconds(v.reset)))
		w.Header().Set("Ratelimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, v.n, ceilSeconds(v.window)))
	}
	if v.ok {
		return true
	}
	rl.stats.rateLimited(v.blocked)
	w.Header().Set("Retry-After", strconv.Itoa(ceilSeconds(v.reset)))
	writeError(w, http.StatusTooManyRequests, CodeRateLimited, messageRateLimited)
	return false
}
