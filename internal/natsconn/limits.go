package natsconn

// Sizes (max_bytes) of the JetStream streams and KV buckets, shared by the
// NATS definitions in deploy/nats and the setup of `reconciler run`, so a
// server provisioned from either stops a runaway publisher before it fills
// its disk. A file stream's max_bytes is reserved on the server when the
// stream is created: the sum (about 4.7 GiB per replica) must fit in the
// JetStream store of each server holding a replica.
//
// max_msgs_per_subject is already 1 wherever one message per subject is
// the design (every KV bucket, the backfill and results streams); the
// event stream keeps every event of a script until it is folded.
const (
	MiB = int64(1) << 20
	GiB = int64(1) << 30

	// EventStreamMaxBytes bounds the event stream (BINDINGS). It discards
	// the oldest events when full; at 7 days of max age this is about
	// 300 events per second of 1 KiB each, kept for a day.
	EventStreamMaxBytes = 2 * GiB
	// DeadLetterStreamMaxBytes bounds the dead-letter stream (BINDINGS_DLQ).
	DeadLetterStreamMaxBytes = 256 * MiB
	// BackfillStreamMaxBytes bounds the backfill work queue
	// (BINDINGS_BACKFILL): one item per script and run.
	BackfillStreamMaxBytes = 512 * MiB
	// BackfillResultsMaxBytes bounds the backfill results stream
	// (BINDINGS_BACKFILL_RESULTS).
	BackfillResultsMaxBytes = 512 * MiB
	// HistoryStreamMaxBytes bounds the history stream (BINDINGS_HISTORY):
	// a few hundred bytes per write, the newest entries of each script.
	HistoryStreamMaxBytes = 256 * MiB
	// DesiredBucketMaxBytes bounds reconciler_desired: the folded desired
	// bindings of every script (secret values included until applied).
	DesiredBucketMaxBytes = 1 * GiB
	// AppliedBucketMaxBytes bounds reconciler_applied: names and value
	// fingerprints per script.
	AppliedBucketMaxBytes = 512 * MiB
	// LeaseBucketMaxBytes bounds reconciler_leases.
	LeaseBucketMaxBytes = 64 * MiB
	// RunsBucketMaxBytes bounds reconciler_backfill_runs.
	RunsBucketMaxBytes = 64 * MiB
	// BudgetBucketMaxBytes bounds reconciler_budget (the shared rate
	// budget's state).
	BudgetBucketMaxBytes = 16 * MiB
	// ConfigBucketMaxBytes bounds reconciler_config (the fingerprint key).
	ConfigBucketMaxBytes = 1 * MiB
)

// StreamMaxBytes returns the max_bytes of a stream by its default name
// (KV buckets as KV_<bucket>), and false for a stream it does not know.
func StreamMaxBytes(stream string) (int64, bool) {
	v, ok := map[string]int64{
		"BINDINGS":                    EventStreamMaxBytes,
		"BINDINGS_DLQ":                DeadLetterStreamMaxBytes,
		"BINDINGS_BACKFILL":           BackfillStreamMaxBytes,
		"BINDINGS_BACKFILL_RESULTS":   BackfillResultsMaxBytes,
		"BINDINGS_HISTORY":            HistoryStreamMaxBytes,
		"KV_reconciler_desired":       DesiredBucketMaxBytes,
		"KV_reconciler_applied":       AppliedBucketMaxBytes,
		"KV_reconciler_leases":        LeaseBucketMaxBytes,
		"KV_reconciler_backfill_runs": RunsBucketMaxBytes,
		"KV_reconciler_budget":        BudgetBucketMaxBytes,
		"KV_reconciler_config":        ConfigBucketMaxBytes,
	}[stream]
	return v, ok
}
