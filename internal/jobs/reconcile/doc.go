// Package reconcile converges one script: Reconciler.Reconcile(ctx, key,
// minRevision) takes the script's write lease, reads its desired state (at
// least revision minRevision), its last-applied record and its live
// bindings, plans with the pure planner, writes only the difference with
// the planned strategy (settings PATCH, script upload, or a version), and
// records what it applied. It is controller-runtime's Reconciler: it holds
// no per-event state, and the caller (the Runner of internal/jobs) decides
// what its Result or error means for the events waiting on the script.
//
// Imports point one way: it imports internal/planner, internal/cfapi,
// internal/jobs/event and internal/jobs/state (the record and lease
// formats); internal/jobs imports it; it never imports internal/jobs. What
// it needs of the stores, the leases and the API are the small interfaces
// Store, Leases and API, so it is tested with fakes and no NATS
// (reconcile_test.go).
//
// Contract and invariants:
//
//   - Every write and every save of the last-applied record happens while
//     the lease is provably held (Lease.Check just before it); a lease
//     another owner holds asks for a requeue, never waits.
//   - A read of the desired state below minRevision (a follower behind its
//     leader) is retried, then reported as a requeue: a Result never
//     covers a revision it did not read.
//   - Before a write, the record says which operations the write carries
//     out (Pending), so a crash between the write and its record still
//     counts them; after it, the record is saved with compare-and-set.
//   - A failure retrying cannot fix is a *TerminalError; when operations
//     of the desired state are to blame (the bindings the API names, or
//     every operation the write carried) they are quarantined and the
//     Result asks for a requeue, so the script converges on the rest.
//   - A write that could collapse a gradual deployment is not made: the
//     script is held (Result.Held) and retried after Config.HoldRetry
//     (version.go). Fallbacks for API behaviour its reference leaves open
//     are remembered per process and logged once (fallback.go).
//   - Auth failures and transient errors are returned as they are; the
//     caller pauses or retries.
package reconcile
