package cfapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/testutil"
)

// fakeTransport answers requests from a script of responses and records
// them.
type fakeTransport struct {
	mu      sync.Mutex
	answers []func(*http.Request) (*http.Response, error)
	reqs    []*http.Request
	bodies  []string
	times   []time.Time
}

func (f *fakeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var body string
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.bodies = append(f.bodies, body)
	f.times = append(f.times, time.Now())
	var a func(*http.Request) (*http.Response, error)
	if len(f.answers) > 0 {
		a = f.answers[0]
		if len(f.answers) > 1 {
			f.answers = f.answers[1:]
		}
	}
	f.mu.Unlock()
	if a == nil {
		return resp(200, `{"success":true,"result":{}}`), nil
	}
	return a(r)
}

func (f *fakeTransport) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func answer(status int, body string, hdr ...string) func(*http.Request) (*http.Response, error) {
	return func(*http.Request) (*http.Response, error) { return resp(status, body, hdr...), nil }
}

func netErr(*http.Request) (*http.Response, error) {
	return nil, errors.New("read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer")
}

const secretToken = "tok-SUPERSECRET-123"

func newFakeClient(t *testing.T, ft *fakeTransport, retry RetryPolicy) *Client {
	t.Helper()
	lim, err := ratelimit.NewLimiter(1000, time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	if retry.InitialInterval == 0 {
		retry.InitialInterval = time.Millisecond
		retry.MaxInterval = 5 * time.Millisecond
	}
	c, err := New(Config{BaseURL: "http://cf.test/client/v4", Token: secretToken, HTTPClient: &http.Client{Transport: ft}, Limiter: lim, Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var testRef = ScriptRef{AccountID: "023e105f4ecef8ad9ca31a8372d0c353", Namespace: "customers", Script: "tenant-1"}

const okSettings = `{"success":true,"errors":[],"messages":[],"result":{"bindings":[{"type":"kv_namespace","name":"KV","namespace_id":"abc"}],"compatibility_date":"2025-01-01"}}`

func TestRetryCases(t *testing.T) {
	e500 := answer(500, `{"success":false,"errors":[{"code":10013,"message":"workers.api.error.unknown"}]}`)
	cases := []struct {
		name     string
		answers  []func(*http.Request) (*http.Response, error)
		attempts int // requests sent
		wantErr  bool
		retries  int
	}{
		{"ok first time", nil, 1, false, 0},
		{"500 then ok", []func(*http.Request) (*http.Response, error){e500, answer(200, okSettings)}, 2, false, 1},
		{"network error then ok", []func(*http.Request) (*http.Response, error){netErr, answer(200, okSettings)}, 2, false, 1},
		{"408 then ok", []func(*http.Request) (*http.Response, error){answer(408, `{"success":false,"errors":[]}`), answer(200, okSettings)}, 2, false, 1},
		{"10035 on 409 then ok", []func(*http.Request) (*http.Response, error){answer(409, `{"success":false,"errors":[{"code":10035,"message":"Multiple attempts"}]}`), answer(200, okSettings)}, 2, false, 1},
		{"500 forever gives up", []func(*http.Request) (*http.Response, error){e500}, 4, true, 3},
		{"400 10021 not retried", []func(*http.Request) (*http.Response, error){answer(400, `{"success":false,"errors":[{"code":10021,"message":"bad"}]}`)}, 1, true, 0},
		{"404 not retried", []func(*http.Request) (*http.Response, error){answer(404, `{"success":false,"errors":[{"code":10092,"message":"nf"}]}`)}, 1, true, 0},
		{"403 auth not retried", []func(*http.Request) (*http.Response, error){answer(403, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`)}, 1, true, 0},
		{"501 not retried", []func(*http.Request) (*http.Response, error){answer(501, `{"success":false,"errors":[]}`)}, 1, true, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ft := &fakeTransport{answers: c.answers}
			if c.answers == nil {
				ft.answers = []func(*http.Request) (*http.Response, error){answer(200, okSettings)}
			}
			cl := newFakeClient(t, ft, RetryPolicy{MaxAttempts: 4})
			var retries atomic.Int32
			cl.hooks.Retry = func(string, int, time.Duration, error) { retries.Add(1) }
			s, err := cl.GetSettings(context.Background(), testRef)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, c.wantErr)
			}
			if ft.count() != c.attempts {
				t.Errorf("attempts = %d, want %d", ft.count(), c.attempts)
			}
			if int(retries.Load()) != c.retries {
				t.Errorf("retry hook calls = %d, want %d", retries.Load(), c.retries)
			}
			if err == nil && (len(s.Bindings) != 1 || s.Bindings[0].Name() != "KV") {
				t.Errorf("settings = %+v", s)
			}
			if err != nil && strings.Contains(err.Error(), secretToken) {
				t.Errorf("error leaks the token: %v", err)
			}
		})
	}
}

func TestRequestsCarryAuthAndRebuildBodies(t *testing.T) {
	ft := &fakeTransport{answers: []func(*http.Request) (*http.Response, error){
		answer(503, `{"success":false,"errors":[]}`), answer(200, `{"success":true,"result":{"bindings":[]}}`)}}
	cl := newFakeClient(t, ft, RetryPolicy{MaxAttempts: 3})
	_, err := cl.PatchSettings(context.Background(), testRef, SettingsPatch{Bindings: wire.Bindings{wire.Ref("kv_namespace", "KV")}})
	if err != nil {
		t.Fatal(err)
	}
	if ft.count() != 2 {
		t.Fatalf("attempts = %d", ft.count())
	}
	for i, r := range ft.reqs {
		if got := r.Header.Get("Authorization"); got != "Bearer "+secretToken {
			t.Errorf("attempt %d Authorization = %q", i, got)
		}
		if r.URL.Path != "/client/v4/accounts/023e105f4ecef8ad9ca31a8372d0c353/workers/dispatch/namespaces/customers/scripts/tenant-1/settings" {
			t.Errorf("path = %s", r.URL.Path)
		}
		if !strings.Contains(ft.bodies[i], `{"bindings":[{"type":"kv_namespace","name":"KV"}]}`) || !strings.Contains(ft.bodies[i], `name="settings"`) {
			t.Errorf("attempt %d body lacks the settings part: %q", i, ft.bodies[i])
		}
	}
}

func TestKeyAuth(t *testing.T) {
	ft := &fakeTransport{}
	lim, _ := ratelimit.NewLimiter(100, time.Second, 1)
	cl, err := New(Config{BaseURL: "http://cf.test/client/v4", Email: "ops@example.com", APIKey: "k123", HTTPClient: &http.Client{Transport: ft}, Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = cl.GetSettings(context.Background(), testRef)
	r := ft.reqs[0]
	if r.Header.Get("X-Auth-Email") != "ops@example.com" || r.Header.Get("X-Auth-Key") != "k123" || r.Header.Get("Authorization") != "" {
		t.Fatalf("headers = %v", r.Header)
	}
	if _, err := New(Config{Email: "ops@example.com"}); err == nil {
		t.Fatal("email without key accepted")
	}
	if _, err := New(Config{BaseURL: "ftp://x"}); err == nil {
		t.Fatal("bad base URL accepted")
	}
}

func TestNoRetryAfterContextEnds(t *testing.T) {
	ft := &fakeTransport{answers: []func(*http.Request) (*http.Response, error){answer(500, `{"success":false,"errors":[]}`)}}
	cl := newFakeClient(t, ft, RetryPolicy{MaxAttempts: 10, InitialInterval: time.Hour, MaxInterval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := cl.GetSettings(ctx, testRef)
	if err == nil {
		t.Fatal("want error")
	}
	if ft.count() != 1 {
		t.Fatalf("attempts = %d, want 1 (next attempt is past the deadline)", ft.count())
	}
}

// TestRateLimitPausesWholeLimiter: a 429 with Retry-After pauses every
// caller, not only the one that got it: callers that queue for a token
// while the pause is in force send nothing until it ends.
func TestRateLimitPausesWholeLimiter(t *testing.T) {
	var first atomic.Bool
	ft := &fakeTransport{}
	ft.answers = []func(*http.Request) (*http.Response, error){func(r *http.Request) (*http.Response, error) {
		if first.CompareAndSwap(false, true) {
			return resp(429, `{"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}]}`, "Retry-After", "2"), nil
		}
		return resp(200, okSettings), nil
	}}
	// A window long enough that the 2 s Retry-After is not capped.
	lim, err := ratelimit.NewLimiter(1000, 10*time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := New(Config{BaseURL: "http://cf.test/client/v4", Token: secretToken, HTTPClient: &http.Client{Transport: ft}, Limiter: lim,
		Retry: RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var paused atomic.Int32
	cl.hooks.RateLimited = func(_ string, d time.Duration) {
		if d != 2*time.Second {
			t.Errorf("pause = %s, want 2s from Retry-After", d)
		}
		paused.Add(1)
	}
	const others = 8
	var wg sync.WaitGroup
	call := func() {
		defer wg.Done()
		if _, err := cl.GetSettings(context.Background(), testRef); err != nil {
			t.Error(err)
		}
	}
	// The first call gets the 429 and retries after the pause.
	wg.Add(1)
	go call()
	testutil.Eventually(t, 10*time.Second, lim.Paused, "the 429 never paused the limiter")
	until := lim.PausedUntil()
	// Start the others while the pause is in force: they queue for a token.
	for range others {
		wg.Add(1)
		go call()
	}
	// (With a broken pause they are not held back: their requests reach
	// the server at once, and the check below reports them.)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return lim.Waiting(ratelimit.PriorityLive) >= others || ft.count() > 1 || !lim.Paused()
	}, "the callers neither queued nor sent")
	if ft.count() == 1 && !time.Now().Before(until) {
		t.Fatalf("the callers queued only after the pause ended (%s); the machine is too slow for this test", until.Format(time.StampMicro))
	}
	wg.Wait()
	if paused.Load() != 1 {
		t.Fatalf("hook calls %d, want 1", paused.Load())
	}
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if len(ft.times) != others+2 {
		t.Fatalf("requests = %d, want %d", len(ft.times), others+2)
	}
	for i, at := range ft.times[1:] {
		if at.Before(until) {
			t.Errorf("request %d sent at %s, during the pause that ends %s", i+2, at.Format(time.StampMicro), until.Format(time.StampMicro))
		}
	}
}
