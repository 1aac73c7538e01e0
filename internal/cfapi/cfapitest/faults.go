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

// takeFailRule returns the rule that fails a request to endpoint, if any.
func (s *Server) takeFailRule(endpoint string) *failRule {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	for i, fr := range s.failNext {
		if len(fr.endpoints) > 0 && !slices.Contains(fr.endpoints, endpoint) {
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
func (s *Server) injectFault(w http.ResponseWriter, endpoint string, f Faults) bool {
	if fr := s.takeFailRule(endpoint); fr != nil {
		s.stats.injected()
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

// SetRateLimit changes the rate limit at runtime and starts a new window;
// n = 0 turns it off.
func (s *Server) SetRateLimit(n int, window time.Duration) { s.limit.set(n, window) }

// limiter is the API's fixed-window rate limit: the first request counted
// starts a window of the configured length, and every request beyond the
// budget inside that window is refused until the window ends.
type limiter struct {
	mu     sync.Mutex
	n      int
	window time.Duration
	start  time.Time
	count  int
}

func (l *limiter) set(n int, window time.Duration) {
	l.mu.Lock()
	l.n, l.window, l.start, l.count = n, window, time.Time{}, 0
	l.mu.Unlock()
}

// take counts a request arriving at now. It returns whether the request is
// within the budget, the requests left, the time until the window ends and
// the limit and window (n = 0 when off).
func (l *limiter) take(now time.Time) (ok bool, remaining int, reset time.Duration, n int, window time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n <= 0 || l.window <= 0 {
		return true, 0, 0, 0, 0
	}
	if l.start.IsZero() || now.Sub(l.start) >= l.window || now.Before(l.start) {
		l.start, l.count = now, 0
	}
	l.count++
	reset = l.start.Add(l.window).Sub(now)
	return l.count <= l.n, max(0, l.n-l.count), reset, l.n, l.window
}

// applyRateLimit counts the request and answers 429 code 971 when it is
// over the budget. It sets the Ratelimit and Ratelimit-Policy headers
// whenever the limit is on.
func (s *Server) applyRateLimit(w http.ResponseWriter, now time.Time) bool {
	ok, remaining, reset, n, window := s.limit.take(now)
	if n == 0 {
		return true
	}
	w.Header().Set("Ratelimit", fmt.Sprintf(`"default";r=%d;t=%d`, remaining, ceilSeconds(reset)))
	w.Header().Set("Ratelimit-Policy", fmt.Sprintf(`"default";q=%d;w=%d`, n, ceilSeconds(window)))
	if ok {
		return true
	}
	w.Header().Set("Retry-After", strconv.Itoa(ceilSeconds(reset)))
	writeError(w, http.StatusTooManyRequests, CodeRateLimited, messageRateLimited)
	return false
}
