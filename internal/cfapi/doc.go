// Package cfapi is the reconciler's thin client for the Cloudflare Workers
// API: the requests that read and change a script's bindings, the error
// envelope and bounded retries.
//
// Imports point one way: cfapi imports its sub-packages wire (the binding
// wire model: parsing, validation, normalization, redaction) and ratelimit
// (the shared Limiter and the Ratelimit header parser); neither imports
// cfapi. The emulator, cfapitest, imports cfapi.
//
// Invariants:
//
//   - Bindings are sent as wire.Binding keeps them, byte for byte.
//     Write-only values (secret_text text, secret_key key material) never
//     appear in errors or logs; wire.RedactJSON is the one redaction rule.
//   - Every request waits on the one shared ratelimit.Limiter first. The
//     Limiter is a local gate in front of a ratelimit.TokenSource:
//     ratelimit.TokenBucket for one process, or a source shared by every
//     process that uses the token (internal/jobs/budget). No interval of
//     the window's length sees more than the budget. A waiting live
//     request gets the next token before any waiting backfill request
//     (ratelimit.WithPriority). A 429 pauses the whole limiter for
//     Retry-After, capped at the window, and the source passes the pause
//     on to every process. A retry after a 429 or a 503 waits the server's
//     Retry-After, otherwise the backoff's delay. Multipart bodies are
//     rebuilt for every attempt. The API token appears only in the
//     Authorization header.
//   - Every non-2xx answer becomes an *APIError (HTTP status, every
//     Cloudflare code and message, Ray ID, Retry-After, method and path);
//     callers ask CodeIs, NotFound, AuthFailed and Retryable (or errors.Is
//     with ErrNotFound, ErrRateLimited, ErrAuth) and never parse strings.
//     A 2xx answer that is not the API's JSON envelope (a proxy's or a
//     challenge page) is an *APIError too, retryable and matched by
//     ErrBadResponse (BadResponse): the API neither accepted nor rejected
//     the request.
//     A call that gives up returns its last attempt's error, wrapped
//     together with the context's error when the context ended.
//   - The beta Workers API (CreateWorkerVersion, ?deploy=true for one-write
//     changes) takes JSON built once per call, so a retry resends the same
//     bytes; an inherit entry without version_id resolves against the
//     latest version, deployed or not (pin it with InheritFrom).
package cfapi
