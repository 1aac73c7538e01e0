// Package tools holds what the CLI does beside the pipeline: publishing
// events (Publish), previewing what events would change (PreviewEvents),
// and listing and replaying dead letters, and the text those print
// (PlanPrinter, PublishSummary.String, WriteDeadLetters).
//
// It imports internal/jobs/event and internal/jobs/state, never the
// Runner; tools only read state, except Publish (the event stream) and a
// replay (the event stream, and deleting the dead letter it replaced).
package tools
