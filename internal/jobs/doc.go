// Package jobs is the event-driven pipeline: JetStream streams, consumers
// and KV buckets, event decoding, the desired-state store, the per-script
// queue with its live and backfill lanes, the workers, acknowledgement and
// dead letters, and the backfill runs.
//
// # Follow one event
//
// A `patch` event published to bindings.<account>.<namespace>.<script>:
//
//  1. Runner.pull takes it from the live consumer (pull.go) and hands it to
//     Runner.fold (intake.go), which gathers a batch (everything waiting,
//     up to 20 ms of a backlog).
//  2. Runner.foldBatch decodes it (event.DecodeEvent, event.go; bad input is
//     dead-lettered here by settle) and groups it with the batch's other
//     events for its script; stores.Commit folds them into the script's
//     event.DesiredState (event.DesiredState.Fold, fold.go) and writes it with one
//     compare-and-set (store.go).
//  3. Runner.waitFolded holds the event (waitTable, held.go) with the
//     revision that contains its fold, or acknowledges it at once when it
//     is stale or already applied; it debounces the script in the keyQueue
//     (queue.go).
//  4. A worker (Runner.work) takes the script and calls Runner.process
//     (reconcile.go): Runner.reconcile takes the script's lease
//     (lease.go), reads the desired state (Runner.readDesired) and then
//     Runner.converge reads the last-applied record and the live settings,
//     plans (planner.Plan), writes (Runner.write, or the version strategy
//     in version.go) and records the last-applied state.
//  5. process's one switch maps the Result (or error) to an outcome, and
//     Runner.settle (settle.go) acknowledges the event (or redelivers it
//     after a backoff, or dead-letters it and terminates it).
//
// # Contract and invariants
//
//   - Events (EVENTS.md) are hints that a script may be dirty. Each valid
//     event is folded into its script's desired state in KV with
//     compare-and-set (per-binding last writer wins by generation, with the
//     floor of the newest replace), so any delivery order and any number of
//     duplicates give the same desired state, across replicas. A folded
//     state that would be invalid or too large for one NATS message is
//     refused at intake, event by event.
//   - An event is acknowledged only after a reconcile whose read of the
//     desired state includes its fold has succeeded (settled by revision,
//     so a read from a follower that is behind never settles it); until
//     then it is held and kept alive with InProgress. A duplicate whose
//     fold the last-applied record shows applied is acknowledged at once.
//     Bad input is dead-lettered with its reason (values of bindings that
//     may be secret redacted) and terminated; it never blocks other events.
//   - One reconcile per script at a time in a process (the key queue), and
//     across processes a per-script lease in KV that fences writes: a
//     reconcile writes and records only while it provably holds it. The
//     last-applied record is saved with compare-and-set.
//   - Live work comes first: the queue hands out live scripts before
//     backfill scripts, backfill items are pulled only while no live script
//     waits and few are held, and backfill API calls wait behind live ones
//     for the budget.
//   - A reconcile that fails permanently because of some operations
//     quarantines them (they are never written; their events are
//     dead-lettered) and the script converges on everything else. An
//     explicit remove that was carried out never deletes again.
//   - Auth failures pause reconciles (readiness fails) without
//     dead-lettering anything; a panic in a reconcile is recovered.
//   - On shutdown, intake stops first, in-flight reconciles finish or are
//     cancelled at the deadline, and every event not applied is handed back
//     for redelivery. Nothing is acknowledged that was not applied. On
//     start, scripts whose desired state is newer than their last-applied
//     record are reconciled at once (a crash's held events need not wait
//     for AckWait).
package jobs
