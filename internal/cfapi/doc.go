// Package cfapi is the reconciler's thin client for the Cloudflare Workers
// API: the binding model, the requests that read and change a script's
// bindings, the error envelope, one shared rate limiter and bounded retries.
//
// Invariants:
//
//   - A Binding keeps its complete JSON object, so fields and types this
//     package does not know round-trip unchanged; typed views (KVNamespace,
//     R2Bucket, ...) and per-type validation exist for every documented type.
//   - Binding.Matches compares a desired binding with a live one after
//     normalizing what the API fills in or re-encodes (d1 id ≡ database_id,
//     json compared as JSON, service environment "production", ai_search
//     namespace "default", empty R2 jurisdiction, server-filled durable
//     object members), so a diff never flaps.
//   - Write-only values (secret_text text, secret_key key material) never
//     appear in errors or logs. Redaction is by default: RedactJSON (and
//     Binding.Redacted, which uses it) hides every value of a binding whose
//     type is not known to be non-secret, unknown types and case variants
//     included, and treats every element of an event's bindings or upsert
//     list as a binding even without a type; it is the one rule for dead
//     letters, plans and logs. It streams: its memory is a small multiple
//     of the document's size whatever the nesting. CheckJSONBounds bounds a
//     document's size and depth (MaxJSONDepth) in one pass before anything
//     decodes, redacts or copies it.
//   - ParseBinding accepts only valid UTF-8, so the bytes sent are the
//     bytes that were validated.
//   - Every request waits on the one shared Limiter first. The Limiter is a
//     local gate in front of a TokenSource: TokenBucket for one process, or
//     a source shared by every process that uses the token
//     (internal/jobs/budget). No interval of the window's length sees more
//     than the budget. A waiting live request gets the next token before
//     any waiting backfill request (WithPriority). A 429 pauses the whole
//     limiter for Retry-After, capped at the window, and the source passes
//     the pause on to every process. A retry after a 429 or a 503 waits the
//     server's Retry-After, otherwise the backoff's delay. Multipart bodies
//     are rebuilt for every attempt. The API token appears only in the
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
