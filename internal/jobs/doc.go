// Package jobs is the event-driven pipeline: JetStream streams, consumer
// and KV buckets, event decoding, the desired-state store, the per-script
// queue, the workers, acknowledgement and dead letters.
//
// Contract and invariants:
//
//   - Events (EVENTS.md) are hints that a script may be dirty. Each valid
//     event is folded into its script's desired state in KV with
//     compare-and-set (per-binding last writer wins by generation, with the
//     floor of the newest replace), so any delivery order and any number of
//     duplicates give the same desired state, across replicas.
//   - An event is acknowledged only after a reconcile of its script that
//     began after the event was folded has succeeded; until then it is held
//     and kept alive with InProgress. Bad input is dead-lettered with its
//     reason (secret values redacted) and terminated; it never blocks other
//     events.
//   - One reconcile per script at a time in a process (a client-go style
//     queue), and across processes a per-script lease in KV, so two replicas
//     never write one script at once. Events that arrive during a reconcile
//     cost at most one more.
//   - One outcome switch (Runner.process) turns a reconcile into Ack,
//     NakWithDelay with backoff, or dead letter + TermWithReason. A bare Nak
//     is never used.
//   - The last-applied record (binding names and keyed fingerprints, never
//     values) is written after a successful write and before any ack.
//   - On shutdown, intake stops first, in-flight reconciles finish or are
//     cancelled at the deadline, and every event not applied is handed back
//     for redelivery. Nothing is acknowledged that was not applied.
package jobs
