package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names are the JetStream resources the reconciler uses. The zero value of
// each field means its default.
type Names struct {
	SubjectPrefix string // event subjects: <prefix>.<account>.<namespace>.<script> (default "bindings")
	Stream        string // event stream (default "BINDINGS")
	Consumer      string // durable pull consumer (default "reconciler")
	DLQStream     string // dead-letter stream (default "BINDINGS_DLQ")
	DLQPrefix     string // dead-letter subjects (default "bindings_dlq")
	DesiredBucket string // desired state per script (default "reconciler_desired")
	AppliedBucket string // last-applied state per script (default "reconciler_applied")
	LeaseBucket   string // per-script write leases (default "reconciler_leases")
}

// WithDefaults fills the empty names.
func (n Names) WithDefaults() Names {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&n.SubjectPrefix, "bindings")
	def(&n.Stream, "BINDINGS")
	def(&n.Consumer, "reconciler")
	def(&n.DLQStream, "BINDINGS_DLQ")
	def(&n.DLQPrefix, "bindings_dlq")
	def(&n.DesiredBucket, "reconciler_desired")
	def(&n.AppliedBucket, "reconciler_applied")
	def(&n.LeaseBucket, "reconciler_leases")
	return n
}

// SetupConfig sizes the JetStream resources.
type SetupConfig struct {
	Names
	// Replicas of every stream, consumer and bucket (1 for a single
	// server, 3 for a clustered NATS).
	Replicas int
	// EventMaxAge is how long events stay in the stream (default 7 days);
	// dead-letter replay reads the original event from it.
	EventMaxAge time.Duration
	// DLQMaxAge is how long dead letters are kept (default 30 days).
	DLQMaxAge time.Duration
	// Duplicates is the stream's de-duplication window for Nats-Msg-Id
	// (default 2 minutes).
	Duplicates time.Duration
	// AckWait must exceed the p99 reconcile time; held events are kept
	// alive with InProgress while their script waits (default 2 minutes).
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one event (default 8).
	MaxDeliver int
	// MaxAckPending bounds events delivered and not yet acknowledged,
	// including events held for their script's reconcile (default 10000).
	MaxAckPending int
	// LeaseTTL is how long a per-script lease lives without renewal
	// (default 30s).
	LeaseTTL time.Duration
}

// WithDefaults fills zero fields.
func (c SetupConfig) WithDefaults() SetupConfig {
	c.Names = c.Names.WithDefaults()
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.EventMaxAge <= 0 {
		c.EventMaxAge = 7 * 24 * time.Hour
	}
	if c.DLQMaxAge <= 0 {
		c.DLQMaxAge = 30 * 24 * time.Hour
	}
	if c.Duplicates <= 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.AckWait <= 0 {
		c.AckWait = 2 * time.Minute
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 8
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 10000
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 30 * time.Second
	}
	return c
}

// Resources are the JetStream handles the pipeline uses.
type Resources struct {
	JS       jetstream.JetStream
	Stream   jetstream.Stream
	Consumer jetstream.Consumer
	DLQ      jetstream.Stream
	stores   *stores
}

// EnsureStreams creates or updates, idempotently, the event stream, the
// durable consumer, the KV buckets and the dead-letter stream.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg SetupConfig) (*Resources, error) {
	cfg = cfg.WithDefaults()
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "Binding-change events (EVENTS.md), one subject per script.",
		Subjects:    []string{cfg.SubjectPrefix + ".*.*.*"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.EventMaxAge,
		Duplicates:  cfg.Duplicates,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Stream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "Reconciler workers (shared by every replica).",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		MaxAckPending: cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: cfg.SubjectPrefix + ".>",
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", cfg.Consumer, err)
	}
	dlq, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.DLQStream,
		Description: "Dead-lettered binding events with their reason.",
		Subjects:    []string{cfg.DLQPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.DLQMaxAge,
		Duplicates:  cfg.Duplicates,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.DLQStream, err)
	}
	kv := func(bucket, desc string, ttl time.Duration) (jetstream.KeyValue, error) {
		b, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket, Description: desc, History: 1, TTL: ttl,
			Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", bucket, err)
		}
		return b, nil
	}
	st := &stores{}
	if st.desired, err = kv(cfg.DesiredBucket, "Desired bindings per script (folded events).", 0); err != nil {
		return nil, err
	}
	if st.applied, err = kv(cfg.AppliedBucket, "Last-applied binding names and value fingerprints per script.", 0); err != nil {
		return nil, err
	}
	if st.leases, err = kv(cfg.LeaseBucket, "Per-script write leases between replicas.", cfg.LeaseTTL); err != nil {
		return nil, err
	}
	return &Resources{JS: js, Stream: stream, Consumer: cons, DLQ: dlq, stores: st}, nil
}
