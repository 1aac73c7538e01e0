package cfapitest

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// SetFaults replaces the random faults at runtime.
func (s *Server) SetFaults(f Faults) {
	s.faultMu.Lock()
	s.faults = f
	s.faultMu.Unlock()
}

// Faults returns the current random faults.
func (s *Server) Faults() Faults {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return s.faults
}

type failRule struct {
	left       int
	status     int
	code       int
	retryAfter time.Duration
	endpoints  []string
	page       bool   // answer 200 with an HTML page
	script     string // only requests about this script count ("" any)
}

// FailNext makes the next n requests fail with the HTTP status and
// Cloudflare code, after latency, rate limit and auth. When endpoints are
// given only requests to those endpoints count. retryAfter > 0 sets a
// Retry-After header (whole seconds, rounded up). Status 0 resets the
// connection instead of answering. Rules queue up: a request is failed by
// the oldest rule that matches it and still has failures left.
func (s *Server) FailNext(n int, status, code int, retryAfter time.Duration, endpoints ...string) {
	if n <= 0 {
		return
	}
	s.faultMu.Lock()
	s.failNext = append(s.failNext, &failRule{left: n, status: status, code: code, retryAfter: retryAfter,
		endpoints: slices.Clone(endpoints)})
	s.faultMu.Unlock()
}

// AnswerPageNext makes the next n requests (to the endpoints, when given)
// answer 200 with an HTML page instead of the API's JSON envelope, as a
// proxy or a challenge page in front of the API does. The request is not
// applied. Rules queue up with FailNext's.
func (s *Server) AnswerPageNext(n int, endpoints ...string) {
	if n <= 0 {
		return
	}
	s.faultMu.Lock()
	s.failNext = append(s.failNext, &failRule{left: n, page: true, endpoints: slices.Clone(endpoints)})
	s.faultMu.Unlock()
}

// takeFailRule returns the rule that fails a request to endpoint about
// script, if any.
func (s *Server) takeFailRule(endpoint, script string) *failRule {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	for i, fr := range s.failNext {
		if len(fr.endpoints) > 0 && !slices.Contains(fr.endpoints, endpoint) {
			continue
		}
		if fr.script != "" && fr.script != script {
			continue
		}
		fr.left--
		if fr.left == 0 {
			s.failNext = slices.Delete(s.failNext, i, i+1)
		}
		return fr
	}
	return nil
}

// injectFault answers the request with a deterministic (FailNext) or random
// fault and reports whether it did.
func (s *Server) injectFault(w http.ResponseWriter, endpoint, script string, f Faults) bool {
	if fr := s.takeFailRule(endpoint, script); fr != nil {
		s.stats.injected()
		if fr.page {
			w.Header().Set("Content-Type", "text/html; charset=UTF-8")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>Checking your browser</body></html>"))
			return true
		}
		if fr.status == 0 {
			resetConn(w)
			return true
		}
		if fr.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(ceilSeconds(fr.retryAfter)))
		}
		writeError(w, fr.status, fr.code, messageFor(fr.code))
		return true
	}
	if f.FailRate <= 0 && f.ThrottleRate <= 0 && f.ResetRate <= 0 {
		return false
	}
	u := s.float()
	switch {
	case u < f.ResetRate:
		s.stats.injected()
		resetConn(w)
	case u < f.ResetRate+f.ThrottleRate:
		s.stats.injected()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, CodeRateLimited, messageRateLimited)
	case u < f.ResetRate+f.ThrottleRate+f.FailRate:
		s.stats.injected()
		status := []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[s.intN(3)]
		writeError(w, status, CodeUnknown, messageUnknown)
	default:
		return false
	}
	return true
}

// messageFor returns the API's message for an injected code.
func messageFor(code int) string {
	switch code {
	case CodeRateLimited:
		return messageRateLimited
	case CodeUnknown, 10002:
		return messageUnknown
	case CodeConcurrentModify:
		return messageConcurrentEdit
	case CodeWorkerNotFound:
		return "This Worker does not exist on your account."
	case CodeAuth:
		return "Authentication error"
	}
	return fmt.Sprintf("injected failure (code %d)", code)
}

// resetConn closes the connection without an answer; with TCP it sends a
// reset. When the writer cannot be hijacked it aborts the handler, which
// closes the connection too.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// SetRateLimit changes the rate limit at runtime to n requests per fixed
// window and starts a new window; n = 0 turns it off.
func (s *Server) SetRateLimit(n int, window time.Duration) { s.limit.set(n, window) }

// SetSlidingRateLimit changes the rate limit at runtime to a strict sliding
// window of n requests per window that blocks the token for block (0 means
// window) when exceeded (see Options.RateSliding); the history and any
// block are cleared. n = 0 turns the limit off.
func (s *Server) SetSlidingRateLimit(n int, window, block time.Duration) {
	s.limit.setSliding(n, window, block)
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

// applyRateLimit counts the request and answers 429 code 971 when it is
// over the budget (or the token is blocked). It sets the Ratelimit and
// Ratelimit-Policy headers whenever the limit is on.
func (s *Server) applyRateLimit(w http.ResponseWriter, now time.Time) bool {
	v := s.limit.take(now)
	if v.n == 0 {
		return true
	}
	if !s.opts.OmitRateHeaders {
		w.Header().Set("Ratelimit", fmt.Sprintf(`"default";r=%d;t=%d`, v.remaining, ceilSeconds(v.reset)))
		w.Header().Set("Ratelimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, v.n, ceilSeconds(v.window)))
	}
	if v.ok {
		return true
	}
	s.stats.rateLimited(v.blocked)
	w.Header().Set("Retry-After", strconv.Itoa(ceilSeconds(v.reset)))
	writeError(w, http.StatusTooManyRequests, CodeRateLimited, messageRateLimited)
	return false
}
