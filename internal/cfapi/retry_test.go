package cfapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// retryDelays runs GetSettings against answers and returns the delays the
// Retry hook saw and the call's error.
func retryDelays(t *testing.T, cl *Client, ctx context.Context) ([]time.Duration, error) {
	t.Helper()
	var mu sync.Mutex
	var delays []time.Duration
	cl.hooks.Retry = func(_ string, _ int, d time.Duration, _ error) {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
	}
	_, err := cl.GetSettings(ctx, testRef)
	mu.Lock()
	defer mu.Unlock()
	return delays, err
}

// TestRetryAfterSetsTheDelay: a 503 or a 429 with Retry-After is retried
// after Retry-After instead of the backoff's delay (1-5 ms here); only the
// 429 pauses the shared limiter. Other statuses keep the backoff.
func TestRetryAfterSetsTheDelay(t *testing.T) {
	cases := []struct {
		name      string
		first     func(*http.Request) (*http.Response, error)
		want      time.Duration // 0: a backoff delay
		wantPause bool
	}{
		{"503 with Retry-After", answer(503, `{"success":false,"errors":[]}`, "Retry-After", "0.04"), 40 * time.Millisecond, false},
		{"429 with Retry-After", answer(429, `{"success":false,"errors":[{"code":971,"message":"slow down"}]}`, "Retry-After", "0.04"), 40 * time.Millisecond, true},
		{"503 without Retry-After", answer(503, `{"success":false,"errors":[]}`), 0, false},
		{"500 with Retry-After", answer(500, `{"success":false,"errors":[]}`, "Retry-After", "0.04"), 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ft := &fakeTransport{answers: []func(*http.Request) (*http.Response, error){c.first, answer(200, okSettings)}}
			cl := newFakeClient(t, ft, RetryPolicy{MaxAttempts: 3})
			delays, err := retryDelays(t, cl, context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(delays) != 1 {
				t.Fatalf("retries %v, want one", delays)
			}
			switch {
			case c.want > 0 && delays[0] != c.want:
				t.Errorf("delay %s, want Retry-After %s", delays[0], c.want)
			case c.want == 0 && delays[0] > 10*time.Millisecond:
				t.Errorf("delay %s, want the backoff's (at most 7.5ms)", delays[0])
			}
			if paused := !cl.Limiter().PausedUntil().IsZero(); paused != c.wantPause {
				t.Errorf("limiter paused = %v, want %v", paused, c.wantPause)
			}
		})
	}
}

func TestGivingUpReturnsTheLastAPIError(t *testing.T) {
	e500 := answer(500, `{"success":false,"errors":[{"code":10013,"message":"workers.api.error.unknown"}]}`)
	check := func(t *testing.T, err error, ctxErr error) {
		t.Helper()
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 500 || !ae.CodeIs(CodeUnknown2) {
			t.Errorf("err = %v, want it to wrap the 500 *APIError", err)
		}
		if ctxErr != nil && !errors.Is(err, ctxErr) {
			t.Errorf("err = %v, want errors.Is %v", err, ctxErr)
		}
		if IsRetryable(err) != (ctxErr == nil) {
			t.Errorf("IsRetryable(%v) = %v", err, IsRetryable(err))
		}
	}

	t.Run("attempts run out", func(t *testing.T) {
		ft := &fakeTransport{answers: []func(*http.Request) (*http.Response, error){e500}}
		_, err := newFakeClient(t, ft, RetryPolicy{MaxAttempts: 3}).GetSettings(context.Background(), testRef)
		check(t, err, nil)
		if ft.count() != 3 || !strings.Contains(err.Error(), "after 3 attempts") {
			t.Errorf("%d attempts, err %v", ft.count(), err)
		}
	})
	t.Run("context canceled while waiting between attempts", func(t *testing.T) {
		ft := &fakeTransport{answers: []func(*http.Request) (*http.Response, error){e500}}
		cl := newFakeClient(t, ft, RetryPolicy{MaxAttempts: 5, InitialInterval: time.Hour, MaxInterval: time.Hour, MaxElapsed: 10 * time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cl.hooks.Retry = func(string, int, time.Duration, error) { cancel() } // called just before the wait
		_, err := cl.GetSettings(ctx, testRef)
		check(t, err, context.Canceled)
		if ft.count() != 1 {
			t.Errorf("%d attempts, want 1", ft.count())
		}
	})
	t.Run("context canceled during the next attempt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ft := &fakeTransport{answers: []func(*http.Request) (*http.Response, error){e500, func(r *http.Request) (*http.Response, error) {
			cancel()
			return nil, r.Context().Err()
		}}}
		_, err := newFakeClient(t, ft, RetryPolicy{MaxAttempts: 5}).GetSettings(ctx, testRef)
		check(t, err, context.Canceled)
	})
	t.Run("deadline before the next attempt", func(t *testing.T) {
		ft := &fakeTransport{answers: []func(*http.Request) (*http.Response, error){answer(503, `{"success":false,"errors":[]}`, "Retry-After", "3600")}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := newFakeClient(t, ft, RetryPolicy{MaxAttempts: 5}).GetSettings(ctx, testRef)
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 503 || ft.count() != 1 {
			t.Errorf("err = %v after %d attempts, want the 503 after 1", err, ft.count())
		}
	})
	t.Run("context canceled before any answer", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := newFakeClient(t, &fakeTransport{}, RetryPolicy{}).GetSettings(ctx, testRef)
		if !errors.Is(err, context.Canceled) || errors.As(err, new(*APIError)) {
			t.Errorf("err = %v, want the bare context error", err)
		}
	})
}

func TestAuthFailuresAreNotRetried(t *testing.T) {
	for _, a := range []func(*http.Request) (*http.Response, error){
		answer(401, `{"success":false,"errors":[]}`),
		answer(500, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}`),
	} {
		ft := &fakeTransport{answers: []func(*http.Request) (*http.Response, error){a}}
		_, err := newFakeClient(t, ft, RetryPolicy{MaxAttempts: 4}).GetSettings(context.Background(), testRef)
		if !errors.Is(err, ErrAuth) || ft.count() != 1 {
			t.Errorf("err = %v after %d attempts, want ErrAuth after 1", err, ft.count())
		}
	}
}
