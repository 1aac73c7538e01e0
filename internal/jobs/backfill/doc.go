// Package backfill runs bulk reconciles through the pipeline: a run
// record in the runs bucket, one work item per script in the backfill
// stream (refused while one is queued, so a resume never queues twice),
// and the results that come back per script. Runs are steered from any
// machine on the NATS (steer.go: List, Run.Status, Cancel; watch.go:
// UntilCancelled) and rendered for people by render.go.
//
// It also holds what `reconciler backfill` does around that: the run's
// input (Source: a JSON-lines events file, or a patch applied to every
// script of a dispatch namespace, falling back to the scripts the
// reconciler knows when the API does not list them), the run as a whole
// (Execute: open or resume, follow results, enqueue what has none, wait),
// its accounting (Tracker, Summary) and a dry run (DryRun).
//
// Invariants: a run holds one item per script; a Tracker counts only the
// results of its own run and of the scripts of its input (a resumed run
// never counts another run's results, nor scripts its input no longer
// holds), and Done never exceeds Total; invalid input is reported with
// its file and line and counted as failed, and the run goes on.
//
// It imports internal/jobs/state (the wire formats), internal/jobs/event
// and internal/jobs/tools (line reading, previews); the runners of the
// pipeline (internal/jobs) take the items on the backfill lane;
// cmd/reconciler and internal/progress import it.
package backfill
