// Package state holds the reconciler's durable state in JetStream: the
// streams, consumers and KV buckets and their setup (EnsureStreams for
// `run`, Open for tools that never create anything), the desired-state and
// last-applied stores (Store, with its cache and the batch commit),
// per-script write leases (Lease), and the wire formats other processes
// read: backfill runs, items and results, and dead letters.
//
// It imports internal/jobs/event and nothing of the Runner; the Runner
// (internal/jobs), the tools and backfill runs import it.
//
// Invariants: every write of a desired state or a last-applied record is
// a compare-and-set on the revision read, so replicas never overwrite each
// other; a Lease fences writes (its Context ends before another owner can
// take the key); every KV request is bounded (a lost answer on a cluster
// fails instead of waiting for the whole reconcile).
package state
