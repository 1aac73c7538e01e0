package cfapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
)

// fuzzAnswer is the answer the fuzzing server gives.
type fuzzAnswer struct {
	status           int
	retryAfter, ctyp string
	body             []byte
}

// FuzzCheckResponse maps arbitrary API answers (status, Retry-After,
// Content-Type, body) to errors (chaos suite, "Fuzzing": API error
// mapping), first with checkResponse alone and then through the client
// against an httptest server. It must never panic. A non-2xx answer is an
// *APIError with its status; an auth failure is never retryable; 408, 429
// and 5xx other than 501 are, and so is a 2xx that is not a JSON envelope
// (ErrBadResponse, never any other 2xx); Retry-After is never negative; a
// non-JSON body is kept only truncated. Through the client, a permanent failure
// costs one attempt, a transient one at most MaxAttempts, and a
// Retry-After beyond the caller's deadline ends the call at once instead
// of sleeping past it.
func FuzzCheckResponse(f *testing.F) {
	f.Add(200, "", "application/json", []byte(`{"success":true,"errors":[],"messages":[],"result":{"bindings":[]}}`))
	f.Add(400, "", "application/json", []byte(`{"success":false,"errors":[{"code":10021,"message":"binding DB of type d1 must have a valid id"}],"messages":[],"result":null}`))
	f.Add(403, "", "application/json", []byte(`{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`))
	f.Add(429, "1", "application/json", []byte(`{"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}]}`))
	f.Add(429, "100000", "", []byte(`rate limited`))
	f.Add(503, "Wed, 21 Oct 2015 07:28:00 GMT", "text/html", []byte(`<html>upstream down</html>`))
	f.Add(502, "-3", "text/plain", []byte(strings.Repeat("x", 2000)))
	f.Add(200, "", "application/json", []byte(`{"success":false,"errors":[{"code":10013,"message":"unknown"}]}`))
	f.Add(200, "", "text/plain", []byte(`not json`))
	f.Add(404, "", "application/json", []byte(`{"success":false,"errors":[{"code":10007,"message":"This Worker does not exist"}]}`))
	f.Add(409, "", "application/json", []byte(`{"success":false,"errors":[{"code":10035,"message":"concurrent"}]}`))
	f.Add(200, "", "application/json", []byte(`{"success":true,"result":null}`))
	f.Add(500, "0.5", "application/json", []byte(`{"errors":null}`))

	var mu sync.Mutex
	var cur fuzzAnswer
	var attempts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		mu.Lock()
		a := cur
		mu.Unlock()
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		if a.ctyp != "" {
			w.Header().Set("Content-Type", a.ctyp)
		}
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}))
	f.Cleanup(srv.Close)
	const maxAttempts = 3
	ref := ScriptRef{AccountID: "023e105f4ecef8ad9ca31a8372d0c353", Namespace: "customers", Script: "tenant-1"}

	f.Fuzz(func(t *testing.T, status int, retryAfter, ctyp string, body []byte) {
		if status < 0 {
			status = -status
		}
		status = 200 + status%400 // 200..599: what a server can send as a final answer
		resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}
		resp.Header.Set("Retry-After", retryAfter)
		resp.Header.Set("Content-Type", ctyp)
		_, err := checkResponse(resp, "GET", "/x", 1<<20)
		ok := status < 300
		var apiErr *APIError
		if err != nil && !errors.As(err, &apiErr) {
			t.Fatalf("error %T %v is not an *APIError", err, err)
		}
		if !ok && apiErr == nil {
			t.Fatalf("HTTP %d gave no error", status)
		}
		if apiErr != nil {
			checkAPIError(t, apiErr, status)
		}

		// Through the client. Header values a server cannot send, and
		// answers whose body the server drops, are left to the part above.
		if !validHeaderValue(retryAfter) || !validHeaderValue(ctyp) || status == 204 || status == 304 {
			return
		}
		mu.Lock()
		cur = fuzzAnswer{status: status, retryAfter: retryAfter, ctyp: ctyp, body: body}
		mu.Unlock()
		attempts.Store(0)
		lim, _ := ratelimit.NewLimiter(1000000, time.Second, 0)
		c, err := New(Config{BaseURL: srv.URL, Token: "fuzz", Limiter: lim,
			Retry: RetryPolicy{MaxAttempts: maxAttempts, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond, RateLimitPause: time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		// A Retry-After beyond the caller's deadline must end the call at
		// once: an answer whose Retry-After the client would honour and
		// that is longer than short gets the short deadline. Every other
		// answer gets a deadline that no call of a few milliseconds of
		// backoff (or a Retry-After of at most short) comes near, so the
		// deadline passing fails the input instead of skipping its checks.
		const short, long = 100 * time.Millisecond, 30 * time.Second
		deadline := long
		if ParseRetryAfter(retryAfter, time.Now()) > short {
			deadline = short
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		_, cerr := c.GetSettings(ctx, ref)
		took := time.Since(start)
		n := attempts.Load()
		if n < 1 || n > maxAttempts {
			t.Fatalf("%d attempts, want 1..%d", n, maxAttempts)
		}
		if took > deadline+2*time.Second {
			t.Fatalf("the call took %s with a %s deadline (%d attempts): it slept past it", took, deadline, n)
		}
		if ctx.Err() != nil && deadline == long {
			t.Fatalf("HTTP %d, Retry-After %q: the %s deadline passed during the call (%d attempts, %s): %v",
				status, retryAfter, deadline, n, took, cerr)
		}
		var cAPI *APIError
		switch {
		case cerr == nil:
			if !ok || n != 1 {
				t.Fatalf("HTTP %d: success after %d attempts", status, n)
			}
		case errors.As(cerr, &cAPI):
			if cAPI.StatusCode != status {
				t.Fatalf("client error has status %d, server sent %d", cAPI.StatusCode, status)
			}
			if !cAPI.Retryable() && n != 1 {
				t.Fatalf("permanent failure %v retried: %d attempts", cerr, n)
			}
			if cAPI.AuthFailed() && !errors.Is(cerr, ErrAuth) {
				t.Fatalf("auth failure not matched by ErrAuth: %v", cerr)
			}
		default:
			// A 2xx envelope whose result does not decode is the client's
			// error, not an *APIError. Otherwise only the short deadline,
			// passing before any answer was read, leaves no *APIError.
			if !ok && (!errors.Is(cerr, context.DeadlineExceeded) || deadline != short) {
				t.Fatalf("HTTP %d gave a %T: %v", status, cerr, cerr)
			}
		}
	})
}

// checkAPIError checks the invariants of an error for an answer with the
// given status.
func checkAPIError(t *testing.T, e *APIError, status int) {
	t.Helper()
	if e.StatusCode != status {
		t.Fatalf("status %d, want %d", e.StatusCode, status)
	}
	msg := e.Error()
	if !strings.Contains(msg, strconv.Itoa(status)) {
		t.Fatalf("message %q does not show the status", msg)
	}
	if len(e.Body) > maxErrorBody {
		t.Fatalf("kept %d bytes of body", len(e.Body))
	}
	if e.RetryAfter < 0 {
		t.Fatalf("negative Retry-After %s", e.RetryAfter)
	}
	if e.AuthFailed() && e.Retryable() {
		t.Fatalf("an auth failure is retryable: %v", e)
	}
	if !e.AuthFailed() && (status == 408 || status == 429 || status >= 500 && status != 501) && !e.Retryable() {
		t.Fatalf("HTTP %d is not retryable: %v", status, e)
	}
	if e.BadResponse() != (e.NotEnvelope && status < 300) || errors.Is(e, ErrBadResponse) != e.BadResponse() {
		t.Fatalf("HTTP %d, not an envelope %t: BadResponse = %t", status, e.NotEnvelope, e.BadResponse())
	}
	if status < 300 && !e.NotEnvelope && len(e.Errors) == 0 && e.Body == "" && e.Retryable() {
		t.Fatalf("HTTP %d envelope without errors is retryable: %v", status, e)
	}
	if e.BadResponse() && !e.Retryable() {
		t.Fatalf("a bad response is not retryable: %v", e)
	}
	if (status == 404) && !e.NotFound() {
		t.Fatalf("404 is not NotFound")
	}
	for _, s := range []struct {
		target error
		want   bool
	}{{ErrNotFound, e.NotFound()}, {ErrRateLimited, e.RateLimited()}, {ErrAuth, e.AuthFailed()}} {
		if errors.Is(e, s.target) != s.want {
			t.Fatalf("errors.Is(%v) = %t, want %t", s.target, !s.want, s.want)
		}
	}
	if slices.ContainsFunc(e.Errors, func(d ErrorDetail) bool { return d.Code == CodeRateLimited }) && !e.RateLimited() {
		t.Fatal("code 971 is not RateLimited")
	}
}

// validHeaderValue reports whether a server can send v as a header value.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}
