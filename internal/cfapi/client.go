package cfapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
)

// DefaultBaseURL is the Cloudflare API base.
const DefaultBaseURL = "https://api.cloudflare.com/client/v4"

// Config configures a Client.
type Config struct {
	// BaseURL is the API base including /client/v4 (default DefaultBaseURL).
	BaseURL string
	// Token is an API token, sent as "Authorization: Bearer". When empty,
	// Email and APIKey are sent as X-Auth-Email and X-Auth-Key.
	Token  string
	Email  string
	APIKey string
	// HTTPClient defaults to a client with a 60s timeout.
	HTTPClient *http.Client
	// Limiter is the shared request budget. Every attempt of every call
	// waits on it. Defaults to NewLimiter(DefaultBudget, DefaultWindow, 0).
	Limiter *ratelimit.Limiter
	Retry   RetryPolicy
	Hooks   Hooks
	// UserAgent defaults to "reconciler".
	UserAgent string
}

// Hooks observe the client for metrics. Every field is optional; hooks must
// be fast and safe for concurrent use.
type Hooks struct {
	// Request is called after every attempt.
	Request func(RequestInfo)
	// Retry is called before sleeping ahead of a retry.
	Retry func(endpoint string, attempt int, delay time.Duration, err error)
	// RateLimited is called when a 429 pauses the shared limiter.
	RateLimited func(endpoint string, pause time.Duration)
	// BudgetWait is called with the time an attempt waited for the budget.
	BudgetWait func(endpoint string, waited time.Duration)
	// RateLimitSeen is called with the API's view of the user's budget
	// from every answer that carries the Ratelimit headers (internal/cfapi/ratelimit).
	RateLimitSeen func(ratelimit.RateLimitView)
	// RateLimitIgnored is called with the parts of those headers that
	// could not be used (for a debug log).
	RateLimitIgnored func(endpoint string, errs []error)
}

// RequestInfo describes one attempt of one call.
type RequestInfo struct {
	Endpoint string // bounded name such as "patch_settings"
	Method   string
	Status   int // 0 when no response arrived
	Attempt  int // 1 for the first attempt
	Duration time.Duration
	Err      error
}

// Endpoint names used in hooks (and by the emulator's counters).
const (
	EPGetSettings     = "get_settings"
	EPGetBindings     = "get_bindings"
	EPPatchSettings   = "patch_settings"
	EPGetContent      = "get_content"
	EPPutScript       = "put_script"
	EPPostVersion     = "post_version"
	EPPostDeployment  = "post_deployment"
	EPListScripts     = "list_scripts"
	EPGetScript       = "get_script"
	EPCreateNamespace = "create_namespace"
	EPListNamespaces  = "list_namespaces"

	// The beta Workers API and deployments (versions_beta.go).
	EPCreateWorkerVersion = "create_worker_version"
	EPGetWorkerVersion    = "get_worker_version"
	EPListWorkerVersions  = "list_worker_versions"
	EPListDeployments     = "list_deployments"
)

// Client calls the Cloudflare Workers API. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	http    *http.Client
	auth    func(http.Header)
	limiter *ratelimit.Limiter
	retry   RetryPolicy
	hooks   Hooks
	ua      string

	identity identityCache // ratelimit_identity.go
}

// New returns a client. It fails when BaseURL is not an absolute http(s)
// URL.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API base URL %q: want an absolute http(s) URL such as %s", cfg.BaseURL, DefaultBaseURL)
	}
	c := &Client{base: u, http: cfg.HTTPClient, limiter: cfg.Limiter, retry: cfg.Retry.withDefaults(), hooks: cfg.Hooks, ua: cfg.UserAgent}
	if c.http == nil {
		c.http = &http.Client{Timeout: 60 * time.Second}
	}
	if c.limiter == nil {
		c.limiter, _ = ratelimit.NewLimiter(ratelimit.DefaultBudget, ratelimit.DefaultWindow, 0)
	}
	if c.ua == "" {
		c.ua = "reconciler"
	}
	token, email, key := cfg.Token, cfg.Email, cfg.APIKey
	switch {
	case token != "":
		c.auth = func(h http.Header) { h.Set("Authorization", "Bearer "+token) }
	case email != "" || key != "":
		if email == "" || key == "" {
			return nil, errors.New("key authentication needs both CLOUDFLARE_API_EMAIL and CLOUDFLARE_API_KEY")
		}
		c.auth = func(h http.Header) { h.Set("X-Auth-Email", email); h.Set("X-Auth-Key", key) }
	default:
		c.auth = func(http.Header) {}
	}
	return c, nil
}

// Limiter returns the client's shared limiter.
func (c *Client) Limiter() *ratelimit.Limiter { return c.limiter }

// call describes one API call; body is rebuilt for every attempt.
type call struct {
	endpoint string
	method   string
	path     string // escaped path below the base
	query    url.Values
	write    bool
	body     func() (io.Reader, string, error) // reader and Content-Type
	// raw, when set, receives the successful response instead of the
	// envelope decoding (for content GETs).
	raw func(*http.Response) error
	// maxBody bounds the response body read (default 32 MiB).
	maxBody int64
	// noResult allows a successful answer without a result (doJSON then
	// leaves its destination as it is).
	noResult bool
}

// do runs a call with the shared limiter and bounded retries, and returns
// the envelope of the successful answer.
//
// A transient failure (IsRetryable) is retried after the backoff's delay,
// or after the server's Retry-After on a 429 or a 503; a 429 also pauses
// the shared limiter for Retry-After (RetryPolicy.RateLimitPause without
// one). do gives up, returning the last attempt's error, on a permanent
// failure, when the policy's attempts or time run out, or when the
// context's deadline would pass before the next attempt. When the context
// ends, the error wraps both the context's error and the last attempt's
// error, so errors.Is finds the one and errors.As an *APIError.
func (c *Client) do(ctx context.Context, cl call) (*envelope, error) {
	if cl.maxBody == 0 {
		cl.maxBody = 32 << 20
	}
	bo := c.retry.newBackOff(ctx)
	var last error // the last attempt's error that is not the context's
	for attempt := 1; ; attempt++ {
		env, err := c.attempt(ctx, cl, attempt)
		if err == nil {
			return env, nil
		}
		if !isContextError(err) {
			last = err
		}
		if ctx.Err() != nil {
			return nil, contextEnded(ctx, last)
		}
		c.pauseOnRateLimit(cl, err)
		if !IsRetryable(err) {
			return nil, err
		}
		delay, giveUp := c.retryDelay(ctx, bo, attempt, err)
		if giveUp != nil {
			return nil, giveUp
		}
		if c.hooks.Retry != nil {
			c.hooks.Retry(cl.endpoint, attempt, delay, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, contextEnded(ctx, last)
		case <-t.C:
		}
	}
}

// pauseOnRateLimit pauses the shared limiter when err is a 429: for its
// Retry-After, or RetryPolicy.RateLimitPause without one.
func (c *Client) pauseOnRateLimit(cl call, err error) {
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !apiErr.RateLimited() {
		return
	}
	pause := apiErr.RetryAfter
	if pause <= 0 {
		pause = c.retry.RateLimitPause
	}
	pause = c.limiter.Pause(pause) // capped at the window
	if c.hooks.RateLimited != nil {
		c.hooks.RateLimited(cl.endpoint, pause)
	}
}

// retryDelay returns the wait before the attempt after attempt, which
// failed with the retryable err: the server's Retry-After on a 429 or a
// 503, else the backoff's next delay. It returns an error wrapping err when
// the call must give up instead.
func (c *Client) retryDelay(ctx context.Context, bo backoff.BackOff, attempt int, err error) (time.Duration, error) {
	delay := bo.NextBackOff()
	if delay == backoff.Stop {
		return 0, fmt.Errorf("giving up after %d attempts: %w", attempt, err)
	}
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.retryAfter() > 0 {
		delay = apiErr.retryAfter()
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < delay {
		return 0, fmt.Errorf("giving up: context deadline before next attempt: %w", err)
	}
	return delay, nil
}

// isContextError reports whether err is a context's cancellation or
// deadline.
func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// contextEnded is do's error when ctx has ended: the context's error,
// wrapped together with the last attempt's error when there was one.
func contextEnded(ctx context.Context, last error) error {
	if last == nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w; last attempt: %w", ctx.Err(), last)
}

func (c *Client) attempt(ctx context.Context, cl call, attempt int) (env *envelope, err error) {
	if cl.write {
		release, err := c.limiter.AcquireWrite(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	waited, err := c.limiter.Wait(ctx)
	if c.hooks.BudgetWait != nil {
		c.hooks.BudgetWait(cl.endpoint, waited)
	}
	if err != nil {
		return nil, err
	}
	u := *c.base
	u.Path = c.base.Path + cl.path
	u.RawPath = c.base.EscapedPath() + cl.path
	if cl.query != nil {
		u.RawQuery = cl.query.Encode()
	}
	var body io.Reader
	var contentType string
	if cl.body != nil {
		if body, contentType, err = cl.body(); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u.String(), body)
	if err != nil {
		return nil, err
	}
	c.auth(req.Header)
	req.Header.Set("User-Agent", c.ua)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	start := time.Now()
	status := 0
	defer func() {
		if c.hooks.Request != nil {
			c.hooks.Request(RequestInfo{Endpoint: cl.endpoint, Method: cl.method, Status: status, Attempt: attempt, Duration: time.Since(start), Err: err})
		}
	}()
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &transportError{fmt.Errorf("cloudflare %s %s: %w", cl.method, cl.path, stripURL(err))}
	}
	status = resp.StatusCode
	c.observeRateLimit(resp.Header, cl.endpoint, start)
	if cl.raw != nil && resp.StatusCode >= 200 && resp.StatusCode < 300 &&
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		defer resp.Body.Close()
		return &envelope{}, cl.raw(resp)
	}
	return checkResponse(resp, cl.method, cl.path, cl.maxBody)
}

// stripURL drops the URL from a *url.Error: the method and path are already
// in the message, and the query could carry data that does not belong in
// logs.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// jsonBody returns a body builder for a JSON value.
func jsonBody(v any) func() (io.Reader, string, error) {
	return func() (io.Reader, string, error) {
		data, err := json.Marshal(v)
		if err != nil {
			return nil, "", err
		}
		return bytes.NewReader(data), "application/json", nil
	}
}

// formPart is one part of a multipart/form-data body.
type formPart struct {
	name, filename string // filename "" leaves it out
	contentType    string // "" leaves the header out
	data           []byte
}

// formBody returns a body builder for a multipart/form-data body of parts,
// in order; the body is rebuilt for every attempt.
func formBody(parts []formPart) func() (io.Reader, string, error) {
	return func() (io.Reader, string, error) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for _, p := range parts {
			h := textproto.MIMEHeader{}
			cd := `form-data; name="` + escapeQuotes(p.name) + `"`
			if p.filename != "" {
				cd += `; filename="` + escapeQuotes(p.filename) + `"`
			}
			h.Set("Content-Disposition", cd)
			if p.contentType != "" {
				h.Set("Content-Type", p.contentType)
			}
			pw, err := mw.CreatePart(h)
			if err != nil {
				return nil, "", err
			}
			if _, err := pw.Write(p.data); err != nil {
				return nil, "", err
			}
		}
		if err := mw.Close(); err != nil {
			return nil, "", err
		}
		return &buf, mw.FormDataContentType(), nil
	}
}

var quoteEscaper = strings.NewReplacer("\\", "\\\\", `"`, "\\\"")

func escapeQuotes(s string) string { return quoteEscaper.Replace(s) }

// doJSON runs a call with do and decodes the result of its envelope into
// v, as go-github's Client.Do does. A successful answer without a result
// is an error unless the call sets noResult.
func (c *Client) doJSON(ctx context.Context, cl call, v any) error {
	env, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	return env.decodeResult(cl, v)
}

// decodeResult decodes the envelope's result into v.
func (env *envelope) decodeResult(cl call, v any) error {
	if len(env.Result) == 0 || string(env.Result) == "null" {
		if cl.noResult {
			return nil
		}
		return fmt.Errorf("cloudflare %s %s: response has no result", cl.method, cl.path)
	}
	if err := json.Unmarshal(env.Result, v); err != nil {
		return fmt.Errorf("cloudflare %s %s: decoding result: %w", cl.method, cl.path, err)
	}
	return nil
}

// ScriptRef names a script: an ordinary Worker when Namespace is empty,
// otherwise a user Worker in that dispatch namespace.
type ScriptRef struct {
	AccountID string `json:"account_id"`
	Namespace string `json:"dispatch_namespace,omitempty"`
	Script    string `json:"script"`
}

// ValidateAccountID checks a Cloudflare account id: 32 lowercase hex digits.
func ValidateAccountID(id string) error {
	ok := len(id) == 32
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'f'
	}
	if !ok {
		return fmt.Errorf("account id %q must be 32 lowercase hex characters", Truncate(id, 64))
	}
	return nil
}

// ValidateScriptName checks a script or dispatch namespace name: 1 to 255
// letters, digits, '-' and '_' (what the API accepts for Worker names and
// what fits in one NATS subject token).
func ValidateScriptName(name string) error {
	ok := len(name) >= 1 && len(name) <= 255
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_'
	}
	if !ok {
		return fmt.Errorf("name %q must be 1-255 letters, digits, '-' or '_'", Truncate(name, 64))
	}
	return nil
}

// Validate checks the account id and names.
func (r ScriptRef) Validate() error {
	if err := ValidateAccountID(r.AccountID); err != nil {
		return err
	}
	if r.Namespace != "" {
		if err := ValidateScriptName(r.Namespace); err != nil {
			return fmt.Errorf("dispatch namespace: %w", err)
		}
	}
	if err := ValidateScriptName(r.Script); err != nil {
		return fmt.Errorf("script: %w", err)
	}
	return nil
}

// Dispatch reports whether the script is a user Worker of a dispatch
// namespace.
func (r ScriptRef) Dispatch() bool { return r.Namespace != "" }

// String returns "account/namespace/script" ("_" for no namespace).
func (r ScriptRef) String() string {
	ns := r.Namespace
	if ns == "" {
		ns = "_"
	}
	return r.AccountID + "/" + ns + "/" + r.Script
}

// scriptPath is the escaped path of the script resource.
func (r ScriptRef) scriptPath() string {
	a := "/accounts/" + url.PathEscape(r.AccountID) + "/workers"
	if r.Namespace != "" {
		return a + "/dispatch/namespaces/" + url.PathEscape(r.Namespace) + "/scripts/" + url.PathEscape(r.Script)
	}
	return a + "/scripts/" + url.PathEscape(r.Script)
}

// observeRateLimit reads the rate-limit headers of an answer (any status)
// to a request sent at sent and hands the view to the limiter and the
// RateLimitSeen hook; parts it cannot use go to the RateLimitIgnored hook
// (a debug log).
func (c *Client) observeRateLimit(h http.Header, endpoint string, sent time.Time) {
	v, errs := ratelimit.ViewFromHeader(h, time.Now())
	v.Sent = sent
	if len(errs) > 0 && c.hooks.RateLimitIgnored != nil {
		c.hooks.RateLimitIgnored(endpoint, errs)
	}
	if !v.Valid() {
		return
	}
	c.limiter.ObserveRateLimit(v)
	if c.hooks.RateLimitSeen != nil {
		c.hooks.RateLimitSeen(v)
	}
}
