// Package jobs is the event-driven pipeline: the Runner (intake, the
// per-script queue with its live and backfill lanes, the workers,
// settling, the auth gate) around the Reconciler of internal/jobs/reconcile,
// which converges one script.
//
// Imports point one way: internal/jobs/event (the pure event domain and
// its fold) ← internal/jobs/state (KV stores, leases, stream and bucket
// setup, wire formats) ← internal/jobs/reconcile (one script: read, plan,
// write, record) ← internal/jobs (this package) ← cmd. The tools
// (internal/jobs/tools) and backfill runs (internal/jobs/backfill) import
// event and state, never this package or reconcile.
//
// # Follow one event
//
// A `patch` event published to bindings.<account>.<namespace>.<script>
// goes through 15 functions in 8 files (the helpers a step calls on the
// way, such as decode, keyQueue.Get or succeeded, sit beside it in the
// same file):
//
//  1. Runner.pull (intake.go) takes it from the live consumer and hands it
//     to Runner.intake (intake.go), the intake loop, which gathers a batch
//     (everything waiting, up to 20 ms of a backlog) for
//     Runner.intakeBatch (intake.go). That decodes each message with
//     event.DecodeEvent (event/event.go); bad input is dead-lettered
//     there.
//  2. The events of each script in the batch are folded and stored in one
//     batch commit, state.Store.Commit (state/commit.go): it folds each
//     event into the script's desired state with
//     event.DesiredState.Fold (event/fold.go) and writes the result with
//     one compare-and-set.
//  3. Runner.waitFolded (intake.go) keeps the event waiting with the
//     revision that holds its fold (or acknowledges it at once when it is
//     stale or already applied) and debounces its script with
//     keyQueue.Debounce (queue.go).
//  4. A worker, Runner.work (settle.go), takes the script from the queue
//     and calls Runner.process (settle.go), which calls
//     Reconciler.Reconcile (reconcile/reconcile.go): it takes the script's
//     lease, reads the desired state at or after that revision, and
//     Reconciler.converge (reconcile/reconcile.go) reads the last-applied
//     record and the live settings, plans with planner.Planner.Plan
//     (internal/planner/plan.go) and, through Reconciler.write
//     (reconcile/reconcile.go), sends the plan's bindings as the settings
//     PATCH, then records the last-applied state.
//  5. process's one switch (five cases) maps the Result (or error) to what
//     happens next, and Runner.settle (settle.go) acknowledges the event
//     (or redelivers it after a backoff, or dead-letters it and
//     terminates it).
//
// Beside that path, each job of its own has its own type: dead letters
// (deadLetters, dlq.go), backfill results (backfillResults, backfill.go),
// resync and crash recovery (resyncer, resync.go), the script history
// (history, history.go), the scope of an auth failure (accountScopes,
// scope.go) and the auth gate (authGate, auth.go). The queue owns the
// per-script backoff of a script that fails with no event to redeliver
// (keyQueue.AddRateLimited, Forget).
//
// # Words
//
// An event is waiting from its fold until it is settled (waitTable); a
// script is held when a gradual deployment defers its write (Result.Held,
// reconciler_scripts_held_total); the backlog is the events the live
// consumer has not had folded yet (the queue's debounce waits for it). The
// intake loop is Runner.intake; the fold is what one event does to a
// desired state (event.DesiredState.Fold); the batch commit stores the
// folds of a batch (state.Store.Commit). The gauge reconciler_held_events
// counts waiting events.
//
// # Contract and invariants
//
//   - Events (docs/events.md) are hints that a script may be dirty. Each
//     valid event is folded into its script's desired state in KV with
//     compare-and-set (per-binding last writer wins by generation, with the
//     floor of the newest replace), so any delivery order and any number of
//     duplicates give the same desired state, across replicas. A folded
//     state that would be invalid or too large for one NATS message is
//     refused at intake, event by event.
//   - An event is acknowledged only after a reconcile whose read of the
//     desired state includes its fold has succeeded (settled by revision,
//     so a read from a follower that is behind never settles it); until
//     then it waits and is kept alive with InProgress. A duplicate whose
//     fold the last-applied record shows applied is acknowledged at once.
//     Bad input is dead-lettered with its reason (values of bindings that
//     may be secret redacted) and terminated; it never blocks other events.
//   - One reconcile per script at a time in a process (the key queue), and
//     across processes a per-script lease in KV that fences writes: a
//     reconcile writes and records only while it provably holds it. The
//     last-applied record is saved with compare-and-set.
//   - Live work comes first: the queue hands out live scripts before
//     backfill scripts, backfill items are pulled only while no live script
//     waits and few are waiting, and backfill API calls wait behind live
//     ones for the budget.
//   - A reconcile that fails permanently because of some operations
//     quarantines them (they are never written; their events are
//     dead-lettered) and the script converges on everything else. An
//     explicit remove that was carried out never deletes again.
//   - An auth failure is scoped with one verification of the token: when
//     the token verifies, the refused account is outside its scope and
//     that script's events are dead-lettered (forbidden_account) while
//     every other tenant goes on; only when the token itself fails do
//     reconciles pause (readiness fails), dead-lettering nothing. A panic
//     in a reconcile is recovered.
//   - A script that keeps failing with no event to redeliver is retried by
//     the queue with per-key backoff, at most MaxDeliver times in a row.
//   - Every timer of the queue and the Runner comes from Config.Clock, so
//     tests step a fake clock. Leases (internal/jobs/state) use the real
//     clock: their fence is a bound on real elapsed time.
//   - On shutdown, intake stops first, in-flight reconciles finish or are
//     cancelled at the deadline, and every event not applied is handed back
//     for redelivery. Nothing is acknowledged that was not applied. On
//     start, scripts whose desired state is newer than their last-applied
//     record are reconciled at once (a crash's waiting events need not wait
//     for AckWait).
package jobs
