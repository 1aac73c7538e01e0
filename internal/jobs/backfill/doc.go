// Package backfill runs bulk reconciles through the pipeline: a run
// record in the runs bucket, one work item per script in the backfill
// stream (refused while one is queued, so a resume never queues twice),
// and the results that come back per script. Runs are steered from any
// machine on the NATS (steer.go: List, Run.Status, Cancel; watch.go:
// UntilCancelled) and rendered for people by render.go.
//
// It imports internal/jobs/state (the wire formats); the runners of the
// pipeline (internal/jobs) take the items on the backfill lane.
package backfill
