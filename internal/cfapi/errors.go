package cfapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Cloudflare error codes the reconciler reacts to (docs/emulator.md lists the ones it emulates).
const (
	CodeRateLimited        = 971   // HTTP 429, "Please wait and consider throttling your request speed"
	CodeUnknown            = 10002 // transient: workers.api.error.unknown
	CodeUnknown2           = 10013 // transient: workers.api.error.unknown
	CodeConcurrentModify   = 10035 // transient: multiple attempts to modify a resource at the same time
	CodeWorkerNotFound     = 10007
	CodeEnvNotFound        = 10090
	CodeDispatchNotFound   = 10092
	CodeValidation         = 10021
	CodeInvalidInherit     = 10057
	CodeMissingSettings    = 10201
	CodeAuthentication     = 10000 // HTTP 403, "Authentication error"
	CodeAuthenticationFail = 9106  // "Missing X-Auth-Key, X-Auth-Email or Authorization headers"
	CodeUnauthorized       = 9109  // "Unauthorized to access requested resource", an invalid token
	CodeNoRoute            = 7000  // "No route for that URI": the path does not exist
)

// Codes of edits that build on the latest version while it is not the
// deployed one (workers-sdk #12392; wrangler's VERSION_*_NOT_DEPLOYED).
const (
	CodeSettingsNotDeployed = 10214 // a settings PATCH
	CodeSecretNotDeployed   = 10215 // a secret edit
)

// ErrorDetail is one entry of the envelope's "errors" or "messages".
type ErrorDetail struct {
	Code             int    `json:"code"`
	Message          string `json:"message"`
	DocumentationURL string `json:"documentation_url,omitempty"`
	Source           *struct {
		Pointer string `json:"pointer,omitempty"`
	} `json:"source,omitempty"`
}

// APIError is a failed Cloudflare API call: a non-2xx status or an envelope
// with "success": false. It carries every error entry, not only the first.
type APIError struct {
	StatusCode int
	Errors     []ErrorDetail
	Messages   []ErrorDetail
	RayID      string
	// RetryAfter is the server's Retry-After, zero when absent.
	RetryAfter time.Duration
	Method     string
	Path       string
	// Body holds the start of a body that was not a JSON envelope.
	Body string
	// NotEnvelope is set when the body was not the API's JSON envelope: a
	// proxy's error or challenge page, a cut-off body.
	NotEnvelope bool
}

// Error summarizes the call and every error code and message.
func (e *APIError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "cloudflare %s %s: HTTP %d", e.Method, e.Path, e.StatusCode)
	for i, d := range e.Errors {
		if i == 0 {
			sb.WriteString(": ")
		} else {
			sb.WriteString("; ")
		}
		fmt.Fprintf(&sb, "%d %s", d.Code, d.Message)
	}
	if len(e.Errors) == 0 && e.Body != "" {
		fmt.Fprintf(&sb, ": %q", e.Body)
	}
	if e.RayID != "" {
		fmt.Fprintf(&sb, " (ray %s)", e.RayID)
	}
	return sb.String()
}

// CodeIs reports whether any error entry has the given code.
func (e *APIError) CodeIs(code int) bool {
	return slices.ContainsFunc(e.Errors, func(d ErrorDetail) bool { return d.Code == code })
}

// NotFound reports whether the script (or namespace) does not exist: HTTP
// 404 or codes 10007, 10090, 10092.
func (e *APIError) NotFound() bool {
	return e.StatusCode == http.StatusNotFound || e.CodeIs(CodeWorkerNotFound) ||
		e.CodeIs(CodeEnvNotFound) || e.CodeIs(CodeDispatchNotFound)
}

// RateLimited reports a 429 or code 971.
func (e *APIError) RateLimited() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.CodeIs(CodeRateLimited)
}

// AuthFailed reports an authentication or authorization failure: HTTP 401
// or 403, or codes 10000, 9106 or 9109. The credentials are wrong, expired
// or lack a permission, so no request of this client can succeed until
// someone fixes them: a caller should stop taking work rather than fail
// every item.
func (e *APIError) AuthFailed() bool {
	return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden ||
		e.CodeIs(CodeAuthentication) || e.CodeIs(CodeAuthenticationFail) || e.CodeIs(CodeUnauthorized)
}

// BadResponse reports a 2xx answer that is not the API's JSON envelope:
// something between the reconciler and the API (a proxy, a challenge page)
// answered, so the API neither accepted nor rejected the request. It is
// retryable; a write that ends with it may or may not have been applied,
// so the caller re-reads before deciding, and never reports it as the
// API's rejection.
func (e *APIError) BadResponse() bool {
	return e.NotEnvelope && e.StatusCode >= 200 && e.StatusCode < 300
}

// Retryable reports whether the same request may succeed later: 408, 429,
// 5xx except 501, a bad response (see BadResponse), and codes 971, 10002,
// 10013 and 10035, unless the answer is an authentication failure (see
// AuthFailed). Validation, authentication and not-found answers are
// permanent.
func (e *APIError) Retryable() bool {
	if e.AuthFailed() {
		return false
	}
	switch {
	case e.BadResponse():
		return true
	case e.StatusCode == http.StatusRequestTimeout, e.StatusCode == http.StatusTooManyRequests:
		return true
	case e.StatusCode >= 500 && e.StatusCode != http.StatusNotImplemented:
		return true
	}
	for _, c := range []int{CodeRateLimited, CodeUnknown, CodeUnknown2, CodeConcurrentModify} {
		if e.CodeIs(c) {
			return true
		}
	}
	return false
}

// retryAfter returns the server's Retry-After when it sets the delay of the
// next attempt: on a 429 (or code 971) and on a 503. Zero otherwise.
func (e *APIError) retryAfter() time.Duration {
	if e.RateLimited() || e.StatusCode == http.StatusServiceUnavailable {
		return e.RetryAfter
	}
	return 0
}

// Is lets errors.Is match ErrNotFound, ErrRateLimited, ErrAuth and
// ErrBadResponse, on the status, codes and body (see NotFound,
// RateLimited, AuthFailed and BadResponse).
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.NotFound()
	case ErrRateLimited:
		return e.RateLimited()
	case ErrAuth:
		return e.AuthFailed()
	case ErrBadResponse:
		return e.BadResponse()
	}
	return false
}

// Sentinel errors matched by APIError.Is.
var (
	ErrNotFound    = errors.New("cloudflare: not found")
	ErrRateLimited = errors.New("cloudflare: rate limited")
	ErrAuth        = errors.New("cloudflare: authentication failed")
	ErrBadResponse = errors.New("cloudflare: answer is not the API's JSON envelope")
)

// maxErrorBody bounds how much of a non-JSON error body is kept.
const maxErrorBody = 512

type envelope struct {
	Success    *bool           `json:"success"`
	Errors     []ErrorDetail   `json:"errors"`
	Messages   []ErrorDetail   `json:"messages"`
	Result     json.RawMessage `json:"result"`
	ResultInfo json.RawMessage `json:"result_info"`
}

// checkResponse reads resp and returns its envelope, or an *APIError when the
// status is not 2xx or the envelope says "success": false. It always drains
// and closes the body. A 2xx answer that is not a JSON envelope is an error
// too, unless it is empty (204/205).
func checkResponse(resp *http.Response, method, path string, limit int64) (*envelope, error) {
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("cloudflare %s %s: reading response: %w", method, path, err)
	}
	apiErr := func() *APIError {
		return &APIError{
			StatusCode: resp.StatusCode,
			RayID:      resp.Header.Get("Cf-Ray"),
			RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
			Method:     method,
			Path:       path,
		}
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if ok && len(strings.TrimSpace(string(body))) == 0 {
		return &envelope{}, nil
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil || (env.Success == nil && env.Result == nil && env.Errors == nil) {
		e := apiErr()
		e.Body = Truncate(string(body), maxErrorBody)
		e.NotEnvelope = true
		if ok {
			e.Errors = []ErrorDetail{{Message: "response is not a Cloudflare JSON envelope"}}
		}
		return nil, e
	}
	if !ok || (env.Success != nil && !*env.Success) {
		e := apiErr()
		e.Errors = env.Errors
		e.Messages = env.Messages
		return nil, e
	}
	return &env, nil
}

// ParseRetryAfter reads a Retry-After value: whole or fractional seconds, or
// an HTTP date. It returns zero when the value is absent or invalid.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
