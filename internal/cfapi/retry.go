package cfapi

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// RetryPolicy bounds retries of transient failures. The zero value means
// the defaults below.
type RetryPolicy struct {
	// MaxAttempts is the total number of attempts, first one included
	// (default 5; 1 disables retries).
	MaxAttempts int
	// MaxElapsed bounds the time spent retrying one call (default 2m).
	MaxElapsed time.Duration
	// InitialInterval and MaxInterval shape the exponential backoff
	// (defaults 500ms and 30s, multiplier 2, ±50% jitter).
	InitialInterval time.Duration
	MaxInterval     time.Duration
	// RateLimitPause is how long a 429 without Retry-After pauses the
	// shared limiter (default 5m: the API blocks a token that long).
	RateLimitPause time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = 5
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = 2 * time.Minute
	}
	if p.InitialInterval <= 0 {
		p.InitialInterval = 500 * time.Millisecond
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = 30 * time.Second
	}
	if p.RateLimitPause <= 0 {
		p.RateLimitPause = 5 * time.Minute
	}
	return p
}

// newBackOff returns the schedule for one call (ExponentialBackOff is not
// safe for concurrent use, so each call gets its own).
func (p RetryPolicy) newBackOff(ctx context.Context) backoff.BackOff {
	eb := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.InitialInterval),
		backoff.WithMaxInterval(p.MaxInterval),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxElapsedTime(p.MaxElapsed),
	)
	return backoff.WithContext(backoff.WithMaxRetries(eb, uint64(p.MaxAttempts-1)), ctx)
}

// IsRetryable reports whether err is a transient failure worth retrying:
// a network error, or an *APIError whose Retryable says so. Context
// cancellation is never retryable.
func IsRetryable(err error) bool {
	if err == nil || isContextError(err) {
		return false
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Retryable()
	}
	// Every failure of the HTTP transport (reset, EOF, timeout, refused)
	// is marked when it happens; net.Error covers callers' own errors.
	var netErr net.Error
	return errors.As(err, new(*transportError)) || errors.As(err, &netErr)
}

// transportError marks an error returned by the HTTP transport (no response).
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }
