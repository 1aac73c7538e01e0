// Package ratelimit is the request budget shared by every caller of one
// Cloudflare API token: the Limiter (a local gate in front of a
// TokenSource), the single-process TokenBucket, request priorities, and
// the parser of the API's Ratelimit and Ratelimit-Policy headers.
//
// Imports point one way: internal/cfapi (the client) and the shared budget
// (internal/jobs/budget, a TokenSource) import ratelimit; ratelimit imports
// none of the reconciler's packages.
//
// Invariants:
//
//   - No interval of the window's length sees more than the budget: the
//     burst plus a full window of refill stays within it (BurstFor).
//   - A waiting live request gets the next token before any waiting
//     backfill request (WithPriority); callers of one priority are served
//     in arrival order.
//   - A 429 pauses the whole limiter (Pause) for Retry-After, capped at
//     the window, callers already queued included, and the source passes
//     the pause on to every process that shares it.
//   - A separate cap bounds concurrent writes (AcquireWrite).
//   - ParseRateLimit, ParseRateLimitPolicy and ViewFromHeader never panic:
//     the parts of a header they cannot use come back as errors beside
//     what they could use.
package ratelimit
