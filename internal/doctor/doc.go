// Package doctor checks, once and against a real account, the assumptions
// about the Cloudflare API that the reconciler makes where the published
// API reference is silent or only the developer docs (or a guess) say how
// the API behaves: that the token is valid, that answers carry the
// Ratelimit headers, that a dispatch namespace's script list pages with a
// cursor, and, on a temporary script of its own, that a settings PATCH
// keeps values with {type, name} entries, that modified_on moves, and
// that versions and deployments work.
//
// # Contract
//
// Run executes the table of Checks in order on one cfapi.Client (so every
// request waits on that client's limiter) and returns a Report: one Result
// per check, each ok, FAIL or skip with what was seen and, where it
// matters, what to do. A Recorder wired into the client's hooks counts the
// requests and keeps the rate-limit headers the answers carried.
//
// Invariants:
//
//   - Without Options.WriteProbe nothing is written: every check that
//     writes reports skip.
//   - With it, the only script written is the one Run creates, named
//     ProbePrefix followed by random hex; Run deletes it before returning,
//     whether the checks passed, failed or ctx was cancelled (the deletion
//     runs on a context detached from ctx's cancellation, bounded by
//     Options.CleanupTimeout), and reports the deletion as the last
//     Result ("cleanup").
//   - A check that ctx's end interrupts is reported as skip, never FAIL.
//   - No Result holds the API token or a secret value: the probe's secret
//     is random, sent only in request bodies, and the client's errors
//     never carry credentials.
package doctor
