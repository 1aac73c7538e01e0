package state

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
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

	// Backfill lane: work items <BackfillPrefix>.<run>.<account>.<namespace>.<script>
	// in a work-queue stream with its own consumer, results per script in
	// a results stream, and runs in a bucket.
	BackfillPrefix   string // default "bindings_backfill"
	BackfillStream   string // default "BINDINGS_BACKFILL"
	BackfillConsumer string // default "reconciler_backfill"
	ResultsPrefix    string // default "bindings_backfill_results"
	ResultsStream    string // default "BINDINGS_BACKFILL_RESULTS"
	RunsBucket       string // default "reconciler_backfill_runs"

	// History of changes per script: <HistoryPrefix>.<account>.<namespace>.<script>.
	HistoryPrefix string // default "bindings_history"
	HistoryStream string // default "BINDINGS_HISTORY"
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
	def(&n.BackfillPrefix, "bindings_backfill")
	def(&n.BackfillStream, "BINDINGS_BACKFILL")
	def(&n.BackfillConsumer, "reconciler_backfill")
	def(&n.ResultsPrefix, "bindings_backfill_results")
	def(&n.ResultsStream, "BINDINGS_BACKFILL_RESULTS")
	def(&n.RunsBucket, "reconciler_backfill_runs")
	def(&n.HistoryPrefix, "bindings_history")
	def(&n.HistoryStream, "BINDINGS_HISTORY")
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
	// DLQMaxAge is how long dead letters are kept (default 30 days), and
	// backfill results too.
	DLQMaxAge time.Duration
	// Duplicates is the stream's de-duplication window for Nats-Msg-Id
	// (default 2 minutes).
	Duplicates time.Duration
	// AckWait is the live consumer's AckWait (default 20s). Events held
	// for their script, or being worked, are kept alive with InProgress
	// every third of it, so it bounds only how long the events of a
	// process that died wait before they are delivered again.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one event (default 8).
	MaxDeliver int
	// MaxAckPending bounds events delivered and not yet acknowledged,
	// including events held for their script's reconcile (default
	// 250000, a few hundred bytes each): it bounds the memory a storm takes,
	// and a storm larger than
	// it costs more than one reconcile per script.
	MaxAckPending int
	// BackfillMaxAckPending bounds backfill work items delivered and not
	// yet acknowledged across all replicas (default 1000).
	BackfillMaxAckPending int
	// BackfillAckWait is the backfill consumer's AckWait (default 15s).
	// Few backfill items are held at once, so keeping them alive is cheap,
	// and the items a crashed process held come back quickly.
	BackfillAckWait time.Duration
	// LeaseTTL is how long a per-script lease lives without renewal
	// (default 10s). It is also how long the scripts a killed process was
	// writing wait before a restarted process (a new owner) can take them
	// over, so it bounds recovery after a crash; it is renewed every third
	// of it.
	LeaseTTL time.Duration
	// HistoryPerScript is how many history entries (writes) are kept per
	// script (default 20); HistoryMaxAge how long each is kept (default
	// DLQMaxAge).
	HistoryPerScript int
	HistoryMaxAge    time.Duration
}

// DefaultDuration sets *d to v unless *d is positive.
func DefaultDuration(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// WithDefaults fills zero fields.
func (c SetupConfig) WithDefaults() SetupConfig {
	c.Names = c.Names.WithDefaults()
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	DefaultDuration(&c.EventMaxAge, 7*24*time.Hour)
	DefaultDuration(&c.DLQMaxAge, 30*24*time.Hour)
	DefaultDuration(&c.Duplicates, 2*time.Minute)
	DefaultDuration(&c.AckWait, 20*time.Second)
	DefaultDuration(&c.LeaseTTL, 10*time.Second)
	DefaultDuration(&c.BackfillAckWait, 15*time.Second)
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 8
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 250000
	}
	if c.BackfillMaxAckPending <= 0 {
		c.BackfillMaxAckPending = 1000
	}
	if c.HistoryPerScript <= 0 {
		c.HistoryPerScript = 20
	}
	DefaultDuration(&c.HistoryMaxAge, c.DLQMaxAge)
	return c
}

// Resources are the JetStream handles the pipeline uses.
type Resources struct {
	JS               jetstream.JetStream
	Stream           jetstream.Stream
	Consumer         jetstream.Consumer
	DLQ              jetstream.Stream
	Backfill         jetstream.Stream
	BackfillConsumer jetstream.Consumer
	Results          jetstream.Stream
	Runs             jetstream.KeyValue
	// History is the history stream; nil when a tool opened a pipeline
	// set up without it.
	History jetstream.Stream
	// Desired, Applied and Leases are the state buckets (see NewStore).
	Desired, Applied, Leases jetstream.KeyValue
	Names                    Names
}

// streamConfigs returns the configuration of every stream, in creation
// order.
func (c SetupConfig) streamConfigs() []jetstream.StreamConfig {
	return []jetstream.StreamConfig{{
		Name:        c.Stream,
		Description: "Binding-change events (docs/events.md), one subject per script.",
		Subjects:    []string{c.SubjectPrefix + ".*.*.*"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      c.EventMaxAge,
		Duplicates:  c.Duplicates,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		Discard:     jetstream.DiscardOld,
	}, {
		Name:        c.DLQStream,
		Description: "Dead-lettered binding events with their reason.",
		Subjects:    []string{c.DLQPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      c.DLQMaxAge,
		Duplicates:  c.Duplicates,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}, {
		Name:        c.BackfillStream,
		Description: "Backfill work: one item per script and run, removed once the script is reconciled.",
		Subjects:    []string{c.BackfillPrefix + ".*.*.*.*"},
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      c.EventMaxAge,
		Duplicates:  c.Duplicates,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
		// One item per script and run: enqueueing it again while it waits
		// is refused, so a resumed run never queues a script twice.
		MaxMsgsPerSubject:    1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
	}, {
		Name:              c.ResultsStream,
		Description:       "Backfill results: the outcome of each script of each run.",
		Subjects:          []string{c.ResultsPrefix + ".*.*.*.*"},
		Retention:         jetstream.LimitsPolicy,
		MaxAge:            c.DLQMaxAge,
		MaxMsgsPerSubject: 1,
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
	}, {
		Name:              c.HistoryStream,
		Description:       "What the reconciler changed on each script (binding names and kinds of change, never values), the newest entries per script.",
		Subjects:          []string{c.HistoryPrefix + ".*.*.*"},
		Retention:         jetstream.LimitsPolicy,
		MaxAge:            c.HistoryMaxAge,
		MaxMsgsPerSubject: int64(c.HistoryPerScript),
		Discard:           jetstream.DiscardOld,
		Storage:           jetstream.FileStorage,
		Replicas:          c.Replicas,
	}}
}

// ConsumerConfigs returns the configuration of the live and backfill
// consumers.
func (c SetupConfig) ConsumerConfigs() (live, backfill jetstream.ConsumerConfig) {
	live = jetstream.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "Reconciler workers (shared by every replica).",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// No filter: the stream holds only event subjects, and an
		// unfiltered consumer reads the stream without matching every
		// message's subject (several times faster under a storm).
		Replicas: c.Replicas,
	}
	backfill = jetstream.ConsumerConfig{
		Durable:       c.BackfillConsumer,
		Description:   "Reconciler backfill lane (shared by every replica).",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.BackfillAckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.BackfillMaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      c.Replicas,
	}
	return live, backfill
}

// bucketConfigs returns the configuration of every KV bucket.
func (c SetupConfig) bucketConfigs() []jetstream.KeyValueConfig {
	kv := func(bucket, desc string, ttl time.Duration) jetstream.KeyValueConfig {
		return jetstream.KeyValueConfig{Bucket: bucket, Description: desc, History: 1, TTL: ttl,
			Storage: jetstream.FileStorage, Replicas: c.Replicas}
	}
	return []jetstream.KeyValueConfig{
		kv(c.DesiredBucket, "Desired bindings per script (folded events).", 0),
		kv(c.AppliedBucket, "Last-applied binding names and value fingerprints per script.", 0),
		kv(c.LeaseBucket, "Per-script write leases between replicas.", c.LeaseTTL),
		kv(c.RunsBucket, "Backfill runs: what each run covers.", 0),
	}
}

// EnsureStreams creates or updates, idempotently, every stream, consumer
// and bucket the pipeline uses. Only `run` (and `backfill` when it runs
// the pipeline itself) calls it; other tools use Open.
//
// It tolerates other processes creating the same resources at the same
// moment and a cluster still electing leaders: each step is retried (see
// RetrySetup) until it succeeds or ctx ends (log, when not nil, hears
// about every failed attempt). The live consumer keeps the start position
// it has (a consumer recreated to resume from its ack floor keeps
// resuming).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg SetupConfig, log *zap.Logger) (*Resources, error) {
	cfg = cfg.WithDefaults()
	res := &Resources{JS: js, Names: cfg.Names}
	retry := func(what string, op func(context.Context) error) error {
		return RetrySetup(ctx, log, what, op)
	}
	streams := make([]jetstream.Stream, 0, 5)
	for _, sc := range cfg.streamConfigs() {
		err := retry("stream "+sc.Name, func(ctx context.Context) error {
			s, err := js.CreateOrUpdateStream(ctx, sc)
			if err == nil {
				streams = append(streams, s)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", sc.Name, err)
		}
	}
	res.Stream, res.DLQ, res.Backfill, res.Results, res.History = streams[0], streams[1], streams[2], streams[3], streams[4]
	live, backfill := cfg.ConsumerConfigs()
	for _, c := range []struct {
		stream string
		cfg    jetstream.ConsumerConfig
		out    *jetstream.Consumer
	}{{cfg.Stream, live, &res.Consumer}, {cfg.BackfillStream, backfill, &res.BackfillConsumer}} {
		err := retry("consumer "+c.cfg.Durable, func(ctx context.Context) error {
			cc := c.cfg
			if cur, err := js.Consumer(ctx, c.stream, cc.Durable); err == nil {
				ci := cur.CachedInfo()
				cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = ci.Config.DeliverPolicy, ci.Config.OptStartSeq, ci.Config.OptStartTime
			}
			cons, err := js.CreateOrUpdateConsumer(ctx, c.stream, cc)
			if err == nil {
				*c.out = cons
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", c.cfg.Durable, err)
		}
	}
	buckets := make([]jetstream.KeyValue, 0, 4)
	for _, bc := range cfg.bucketConfigs() {
		err := retry("bucket "+bc.Bucket, func(ctx context.Context) error {
			kv, err := js.CreateOrUpdateKeyValue(ctx, bc)
			if err == nil {
				buckets = append(buckets, kv)
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", bc.Bucket, err)
		}
	}
	res.Desired, res.Applied, res.Leases, res.Runs = buckets[0], buckets[1], buckets[2], buckets[3]
	return res, nil
}

// RetrySetup runs op, a step of setting up a JetStream resource, until it
// succeeds, returns an error wrapped by backoff.Permanent, or ctx ends,
// with exponential backoff (200ms growing to 5s) between attempts; log,
// when not nil, hears about every failed attempt.
//
// Each attempt has a timeout that starts at 2s and doubles, up to 10s,
// every time an attempt runs out of it. A clustered NATS may never answer
// a request that creates a stream, a consumer or a bucket that another
// client creates at the same moment (two `run` processes started
// together: both requests time out and the resource exists, see
// nats-io/nats.go#949); the next attempt finds it at once, so a short
// first timeout keeps such a collision cheap, and the longer later ones
// let a slow cluster answer. The timeout is jittered (up to half again),
// so that two processes that collided go on out of step and do not
// collide again on the next resource.
func RetrySetup(ctx context.Context, log *zap.Logger, what string, op func(context.Context) error) error {
	bo := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMaxInterval(5*time.Second),
		backoff.WithMaxElapsedTime(0)), ctx)
	timeout := 2 * time.Second
	return backoff.RetryNotify(func() error {
		actx, cancel := context.WithTimeout(ctx, timeout+rand.N(timeout/2))
		defer cancel()
		err := op(actx)
		if err != nil && errors.Is(actx.Err(), context.DeadlineExceeded) {
			timeout = min(2*timeout, 10*time.Second)
		}
		return err
	}, bo, func(err error, d time.Duration) {
		if log != nil {
			log.Warn("setting up JetStream, will retry", zap.String("resource", what), zap.Duration("in", d), zap.Error(err))
		}
	})
}

// ErrNotSetUp is returned by Open when a resource is missing.
var ErrNotSetUp = errors.New("not set up: start `reconciler run` on this NATS first (it creates the streams and buckets), or pass the --nats-url of the running pipeline")

// Open looks the resources up without creating or changing any of them,
// for tools (publish, plan, dlq, backfill against a running pipeline).
func Open(ctx context.Context, js jetstream.JetStream, names Names) (*Resources, error) {
	names = names.WithDefaults()
	res := &Resources{JS: js, Names: names}
	missing := func(kind, name string, err error) error {
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("%s %s: %w", kind, name, ErrNotSetUp)
		}
		return fmt.Errorf("%s %s: %w", kind, name, err)
	}
	var err error
	for _, s := range []struct {
		name string
		out  *jetstream.Stream
	}{{names.Stream, &res.Stream}, {names.DLQStream, &res.DLQ}, {names.BackfillStream, &res.Backfill}, {names.ResultsStream, &res.Results}} {
		if *s.out, err = js.Stream(ctx, s.name); err != nil {
			return nil, missing("stream", s.name, err)
		}
	}
	if res.Consumer, err = js.Consumer(ctx, names.Stream, names.Consumer); err != nil {
		return nil, missing("consumer", names.Consumer, err)
	}
	if res.BackfillConsumer, err = js.Consumer(ctx, names.BackfillStream, names.BackfillConsumer); err != nil {
		return nil, missing("consumer", names.BackfillConsumer, err)
	}
	var kvs [4]jetstream.KeyValue
	for i, b := range []string{names.DesiredBucket, names.AppliedBucket, names.LeaseBucket, names.RunsBucket} {
		if kvs[i], err = js.KeyValue(ctx, b); err != nil {
			return nil, missing("bucket", b, err)
		}
	}
	res.Desired, res.Applied, res.Leases, res.Runs = kvs[0], kvs[1], kvs[2], kvs[3]
	// The history stream is optional for tools: a pipeline set up by an
	// older `run` has none (ReadHistory says so).
	if res.History, err = js.Stream(ctx, names.HistoryStream); err != nil {
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, missing("stream", names.HistoryStream, err)
		}
		res.History = nil
	}
	return res, nil
}

// NewStore returns a store over res's state buckets.
func (res *Resources) NewStore(opts StoreOptions) *Store {
	return NewStore(res.JS, res.Desired, res.Applied, res.Leases, opts)
}
