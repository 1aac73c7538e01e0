package natsconn

// Sizes of the JetStream streams and KV buckets. The NATS definitions in
// deploy/nats and the setup of `reconciler run` use the same values, so a
// server provisioned from either refuses new messages (discard new for the
// event streams, old for the buckets) before it fills its disk.
const (
	// EventStreamMaxBytes bounds the live event stream (BINDINGS).
	EventStreamMaxBytes = 8 << 30
	// BackfillStreamMaxBytes bounds the backfill stream (BINDINGS_BACKFILL).
	BackfillStreamMaxBytes = 8 << 30
	// BackfillResultsMaxBytes bounds the backfill results stream.
	BackfillResultsMaxBytes = 2 << 30
	// DeadLetterMaxBytes bounds the dead-letter stream (BINDINGS_DLQ).
	DeadLetterMaxBytes = 1 << 30
	// BucketMaxBytes bounds each KV bucket (desired, applied, leases,
	// budget, backfill runs, config).
	BucketMaxBytes = 1 << 30
	// EventMaxMsgsPerSubject keeps the newest events of one script on
	// the live stream; older ones are superseded by the desired state.
	EventMaxMsgsPerSubject = 0
)
