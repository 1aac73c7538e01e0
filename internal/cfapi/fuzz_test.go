package cfapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParseBinding parses and validates arbitrary binding JSON (chaos
// suite, "Fuzzing": binding validation). It must never panic. A parsed
// binding keeps compact, valid UTF-8 JSON that parses again to the same
// binding; validating for upload is at least as strict as for reading;
// validation errors, the redacted form and WithoutWriteOnly never show a
// write-only value.
func FuzzParseBinding(f *testing.F) {
	var corpus struct {
		Bindings []json.RawMessage `json:"bindings"`
	}
	data, err := os.ReadFile("testdata/bindings-corpus.json")
	if err != nil {
		f.Fatal(err)
	}
	if err := json.Unmarshal(data, &corpus); err != nil {
		f.Fatal(err)
	}
	for _, b := range corpus.Bindings {
		f.Add([]byte(b))
	}
	for _, s := range []string{
		`{"type":"secret_text","name":"S","text":"hunter2hunter2"}`,
		`{"type":"secret_text","name":"S"}`,
		`{"type":"plain_text","name":"A","text":"a","type":"secret_text"}`,
		`{"type":"kv_namespace","name":"1BAD","namespace_id":"x"}`,
		`{"type":"json","name":"J","json":{"b":[1,2.50,1e400],"a":"\u003c"}}`,
		`{"type":"unknown_future","name":"U","x":{"y":null}}`,
		"{\"type\":\"plain_text\",\"name\":\"A\",\"text\":\"\xff\"}",
		`{"type":"r2_bucket","name":"B","bucket_name":"b","jurisdiction":"eu"}`,
		`{"type":"inherit","name":"N","old_name":"O","version_id":"latest"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseBinding(data)
		if err != nil {
			if !utf8.ValidString(err.Error()) {
				t.Fatalf("error is not valid UTF-8: %q", err.Error())
			}
			return
		}
		raw := b.Raw()
		if !json.Valid(raw) || !utf8.Valid(raw) {
			t.Fatalf("raw is not valid UTF-8 JSON: %q", raw)
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, raw)
		if !bytes.Equal(compact.Bytes(), raw) {
			t.Fatalf("raw is not compact: %s", raw)
		}
		if m, _ := b.MarshalJSON(); !bytes.Equal(m, raw) {
			t.Fatalf("MarshalJSON %s differs from raw %s", m, raw)
		}
		again, err := ParseBinding(raw)
		if err != nil {
			t.Fatalf("raw does not parse again: %v", err)
		}
		if again.Type() != b.Type() || again.Name() != b.Name() || !bytes.Equal(again.CanonicalJSON(), b.CanonicalJSON()) ||
			again.NormalizedValue() != b.NormalizedValue() || !again.Matches(b) || !b.Matches(again) {
			t.Fatalf("parsing raw again gives another binding:\n%s\n%s", b.CanonicalJSON(), again.CanonicalJSON())
		}
		if !json.Valid(b.CanonicalJSON()) {
			t.Fatalf("canonical JSON is not valid: %s", b.CanonicalJSON())
		}
		upErr, readErr := b.Validate(ForUpload), b.Validate(ForRead)
		if upErr == nil && readErr != nil {
			t.Fatalf("valid for upload but not for reading: %v", readErr)
		}
		if (upErr == nil) != (again.Validate(ForUpload) == nil) {
			t.Fatalf("validation differs after a round trip: %v vs %v", upErr, again.Validate(ForUpload))
		}
		if b.Sensitive() != (!IsKnownType(b.Type()) || b.WriteOnly() || hidesAnyType(raw)) {
			t.Fatalf("Sensitive() = %t for %s", b.Sensitive(), raw)
		}
		secrets := writeOnlyStrings(b)
		for _, e := range []error{upErr, readErr} {
			if e == nil {
				continue
			}
			for _, s := range secrets {
				if strings.Contains(e.Error(), s) {
					t.Fatalf("validation error shows the write-only value %q: %v", s, e)
				}
			}
		}
		red := b.Redacted()
		for _, s := range secrets {
			if bytes.Contains(red.Raw(), []byte(s)) {
				t.Fatalf("redacted binding shows the write-only value %q: %s", s, red.Raw())
			}
			if bytes.Contains(b.WithoutWriteOnly().Raw(), []byte(s)) {
				t.Fatalf("WithoutWriteOnly shows the write-only value %q", s)
			}
		}
	})
}

// hidesAnyType reports whether some type member of the object (keys
// matched case-insensitively) is not a string naming a known type
// without write-only values.
func hidesAnyType(raw []byte) bool {
	ms, err := ObjectMembers(raw)
	if err != nil {
		return true
	}
	return hidesValues(ms)
}

// writeOnlyStrings returns the string values (at least 6 bytes, not the
// type or name) of b's write-only members, as they read in its JSON.
func writeOnlyStrings(b Binding) []string {
	var out []string
	for _, k := range WriteOnlyFields(b.Type()) {
		v, ok := b.Field(k)
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) == nil && len(s) >= 6 && s != b.Name() && s != b.Type() &&
			!strings.Contains(b.Name(), s) && !strings.Contains(b.Type(), s) && !strings.Contains(Redacted, s) {
			out = append(out, s)
		}
	}
	return out
}

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
		lim, _ := NewLimiter(1000000, time.Second, 0)
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
