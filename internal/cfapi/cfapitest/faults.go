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

// Injector is the server's fault injection: the random faults (Faults),
// the queue of deterministic failures (FailNext, AnswerPageNext and their
// per-script forms), the bindings whose removal is refused (RefuseRemoval)
// and the accounts outside the token's scope (DenyAccount). A Server's
// Inject field holds it; it is safe for concurrent use.
type Injector struct {
	rnd   *random
	stats *statsRecorder

	mu       sync.Mutex // guards faults and failNext
	faults   Faults
	failNext []*failRule

	scoped   accountScope    // scope.go
	refusals removalRefusals // scriptfaults.go
}

// SetFaults replaces the random faults at runtime.
func (in *Injector) SetFaults(f Faults) {
	in.mu.Lock()
	in.faults = f
	in.mu.Unlock()
}

// Faults returns the current random faults.
func (in *Injector) Faults() Faults {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.faults
}

// SetFaults replaces the random faults at runtime (Inject.SetFaults).
func (s *Server) SetFaults(f Faults) { s.Inject.SetFaults(f) }

// FailNext is Inject.FailNext: the next n requests (to the endpoints, when
// given) fail with the status and code.
func (s *Server) FailNext(n int, status, code int, retryAfter time.Duration, endpoints ...string) {
	s.Inject.FailNext(n, status, code, retryAfter, endpoints...)
}

// AnswerPageNext is Inject.AnswerPageNext: the next n requests (to the
// endpoints, when given) answer 200 with an HTML page.
func (s *Server) AnswerPageNext(n int, endpoints ...string) { s.Inject.AnswerPageNext(n, endpoints...) }

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
func (in *Injector) FailNext(n int, status, code int, retryAfter time.Duration, endpoints ...string) {
	if n <= 0 {
		return
	}
	in.mu.Lock()
	in.failNext = append(in.failNext, &failRule{left: n, status: status, code: code, retryAfter: retryAfter,
		endpoints: slices.Clone(endpoints)})
	in.mu.Unlock()
}

// AnswerPageNext makes the next n requests (to the endpoints, when given)
// answer 200 with an HTML page instead of the API's JSON envelope, as a
// proxy or a challenge page in front of the API does. The request is not
// applied. Rules queue up with FailNext's.
func (in *Injector) AnswerPageNext(n int, endpoints ...string) {
	if n <= 0 {
		return
	}
	in.mu.Lock()
	in.failNext = append(in.failNext, &failRule{left: n, page: true, endpoints: slices.Clone(endpoints)})
	in.mu.Unlock()
}

// takeFailRule returns the rule that fails a request to endpoint about
// script, if any.
func (in *Injector) takeFailRule(endpoint, script string) *failRule {
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, fr := range in.failNext {
		if len(fr.endpoints) > 0 && !slices.Contains(fr.endpoints, endpoint) {
			continue
		}
		if fr.script != "" && fr.script != script {
			continue
		}
		fr.left--
		if fr.left == 0 {
			in.failNext = slices.Delete(in.failNext, i, i+1)
		}
		return fr
	}
	return nil
}

// inject answers the request with a deterministic (FailNext) or random
// fault and reports whether it did.
func (in *Injector) inject(w http.ResponseWriter, endpoint, script string, f Faults) bool {
	if fr := in.takeFailRule(endpoint, script); fr != nil {
		in.stats.injected()
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
	u := in.rnd.float()
	switch {
	case u < f.ResetRate:
		in.stats.injected()
		resetConn(w)
	case u < f.ResetRate+f.ThrottleRate:
		in.stats.injected()
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, CodeRateLimited, messageRateLimited)
	case u < f.ResetRate+f.ThrottleRate+f.FailRate:
		in.stats.injected()
		status := []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[in.rnd.intN(3)]
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
