package jobs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"k8s.io/utils/clock"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/reconcile"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// API is what the pipeline needs of the Cloudflare client: what a
// reconcile needs, and VerifyToken, which confirms the scope of an auth
// failure (scope.go): a token that verifies was refused one account, not
// every request.
type API interface {
	reconcile.API
	VerifyToken(ctx context.Context) (*cfapi.TokenStatus, error)
}

// publisher is what settling needs of JetStream: a publish that waits for
// the stream's acknowledgement.
type publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// message is what the pipeline needs of a delivered JetStream message.
type message interface {
	acker
	Data() []byte
	Subject() string
	Headers() nats.Header
	Metadata() (*jetstream.MsgMetadata, error)
}

// Runner consumes events and reconciles scripts (docs/architecture.md).
// Its stages, each a method:
//
//	pull     — pulls events from the live consumer (recreating it if it
//	           disappears) and hands them to intake;
//	intake   — decodes a batch, dead-letters bad input, folds the events
//	           of each script into its desired state and stores them in
//	           one batch commit (state.Store.Commit), keeps the events
//	           waiting, and debounces their script;
//	pullBackfill — pulls backfill work only while no live work waits,
//	           and takes it in like events;
//	work     — each worker takes a script from the queue (live first),
//	           reconciles it (reconcile.Reconciler.Reconcile) and settles its
//	           waiting events (process, the one outcome switch, and
//	           settle);
//	shutdown — stops intake, lets reconciles finish within
//	           ShutdownTimeout, and hands every unsettled event back.
//
// Resync and crash recovery (resyncer), dead letters (deadLetters) and
// backfill results (backfillResults) are types of their own.
//
// Words: an event is waiting from its fold until it is settled (a
// waitTable); a script is held when a gradual deployment defers its write
// (reconcile.Result.Held); the backlog is events the live consumer has delivered or
// has pending that are not folded yet.
type Runner struct {
	cfg   Config
	res   *state.Resources
	st    *state.Store
	rec   *reconcile.Reconciler
	m     *metrics.Metrics
	log   *zap.Logger
	clock clock.WithTicker
	// nc is the NATS connection (nil in tests without one).
	nc *nats.Conn

	queue   *keyQueue
	waiting *waitTable
	auth    authGate
	scopes  accountScopes
	// The jobs of their own: dead letters (dlq.go), backfill results
	// (backfill.go), resync and crash recovery (resync.go), and the
	// script history (history.go).
	dlq     deadLetters
	results backfillResults
	resync  *resyncer
	history history
	// consumer is the live consumer: the pull loop replaces it when it
	// recreates it, while gauges reads it.
	consumer atomic.Pointer[jetstream.Consumer]

	// backlog is set while the live consumer has events not yet folded,
	// so that debounced scripts wait for them (see keyQueue).
	backlog atomic.Bool
	// ackFloor is the live consumer's ack floor, last seen: a recreated
	// consumer resumes after it.
	ackFloor atomic.Uint64
	// maxState bounds the encoded desired state of a script: what one
	// NATS message may carry on this connection.
	maxState int
}

// NewRunner returns a runner over resources set up by state.EnsureStreams.
func NewRunner(cfg Config, res *state.Resources, api API, p *planner.Planner, m *metrics.Metrics, log *zap.Logger) *Runner {
	cfg = cfg.withDefaults()
	st := res.NewStore(state.StoreOptions{CacheSize: cfg.StateCacheSize})
	r := &Runner{cfg: cfg, res: res, st: st, m: m, log: log, clock: cfg.Clock, nc: res.JS.Conn(),
		waiting: newWaitTable(), maxState: planner.MaxDesiredBytes * 2}
	r.rec = newReconciler(cfg, st, api, p, m, log, r.waiting.modifiedOn)
	r.consumer.Store(&res.Consumer)
	if r.nc != nil && r.nc.MaxPayload() > 0 {
		r.maxState = int(r.nc.MaxPayload()) - 4<<10
	}
	r.queue = newKeyQueue(queueOptions{
		delay: cfg.CoalesceDelay, maxWait: cfg.CoalesceMaxWait, clock: cfg.Clock,
		backlog: func() bool {
			counts := r.waiting.counts()
			return r.backlog.Load() && counts[laneLive] < cfg.MaxAckPending*9/10
		},
		backoff:    func(n int) time.Duration { return cfg.nakDelay(uint64(n)) },
		maxRetries: cfg.MaxDeliver,
	})
	r.auth.init(cfg.AuthPause, cfg.Clock)
	r.scopes.init(cfg.AuthPause, cfg.Clock, api.VerifyToken)
	r.dlq = deadLetters{cfg: cfg, res: res, pub: res.JS, maxState: r.maxState, log: log}
	r.results = backfillResults{cfg: cfg, pub: res.JS, m: m, clock: cfg.Clock, log: log}
	r.resync = &resyncer{st: st, api: api, queue: r.queue, waiting: r.waiting, log: log}
	r.history = history{res: res, m: m, clock: cfg.Clock}
	return r
}

// newReconciler returns the Reconciler of a Runner configured by cfg (with
// its defaults), over the store st; listed is the modified_on a namespace
// listing showed for a script (the wait table keeps it).
func newReconciler(cfg Config, st *state.Store, api API, p *planner.Planner, m *metrics.Metrics, log *zap.Logger,
	listed func(key string) string) *reconcile.Reconciler {
	return reconcile.New(reconcile.Config{
		ReconcileTimeout: cfg.ReconcileTimeout, DefaultStrategy: cfg.DefaultStrategy,
		SplitCheckDispatch: cfg.SplitCheckDispatch, HoldRetry: cfg.HoldRetry,
		ListedModifiedOn: listed, Clock: cfg.Clock,
	}, st, reconcile.KVLeases(st.Leases(), cfg.Owner, cfg.LeaseTTL), api, p, m, log)
}

// Resync queues a reconcile, on the backfill lane, of every script that
// may have drifted, and returns how many (see resyncer.Resync).
func (r *Runner) Resync(ctx context.Context) (int, error) { return r.resync.Resync(ctx) }

// Ready returns nil when the runner is taking and applying work, or why
// not (the API rejects the credentials).
func (r *Runner) Ready() error { return r.auth.err() }

// Run consumes and reconciles until ctx is cancelled, then shuts down
// gracefully (see shutdown). It never acknowledges an event that was not
// applied.
func (r *Runner) Run(ctx context.Context) error {
	// Reconciles and settling outlive ctx until the shutdown timeout.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	stopWatch := r.watchMaxDeliveries(workCtx)
	defer stopWatch()
	iter, err := r.consume(*r.consumer.Load())
	if err != nil {
		return err
	}
	msgs := make(chan jetstream.Msg, maxIntakeBatch)
	var intake sync.WaitGroup
	intake.Add(3)
	go func() { defer intake.Done(); r.pull(ctx, iter, msgs) }()
	go func() { defer intake.Done(); r.intake(ctx, workCtx, msgs) }()
	go func() { defer intake.Done(); r.pullBackfill(ctx, workCtx) }()

	var workers sync.WaitGroup
	for i := 0; i < r.cfg.Concurrency; i++ {
		workers.Add(1)
		go func() { defer workers.Done(); r.work(workCtx) }()
	}
	// Heartbeats go on while shutdown lets reconciles finish.
	go every(workCtx, r.clock, max(r.cfg.AckWait/3, 100*time.Millisecond), func() { r.waiting.keepAlive(laneLive) })
	go every(workCtx, r.clock, max(r.cfg.BackfillAckWait/3, 100*time.Millisecond), func() { r.waiting.keepAlive(laneBackfill) })
	go every(ctx, r.clock, time.Second, func() { r.gauges(ctx) })
	go every(ctx, r.clock, 15*time.Second, func() {
		if n, err := state.ActiveRuns(ctx, r.res); err == nil {
			r.m.BackfillRunsActive.Set(float64(n))
		}
	})
	if r.cfg.ResyncInterval > 0 {
		go every(ctx, r.clock, r.cfg.ResyncInterval, func() { r.resync.run(ctx) })
	}
	if r.cfg.RecoverOnStart {
		go r.resync.recoverOnStart(ctx)
	}

	<-ctx.Done()
	r.shutdown(&intake, &workers, cancelWork)
	return nil
}

// shutdown stops intake first (the pull loops end and fold settles what
// it was given), then waits for the workers until ShutdownTimeout and
// cancels whatever still runs, and finally hands every event that is waiting
// but not applied back to JetStream for redelivery.
func (r *Runner) shutdown(intake, workers *sync.WaitGroup, cancelWork context.CancelFunc) {
	r.log.Info("shutting down: stopping intake")
	deadline := r.clock.After(r.cfg.ShutdownTimeout)
	intake.Wait()
	r.queue.ShutDown()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-deadline:
		r.log.Warn("shutdown timeout: cancelling in-flight reconciles", zap.Duration("timeout", r.cfg.ShutdownTimeout))
		cancelWork()
		<-done
	}
	hs := r.waiting.takeAll()
	for _, h := range hs {
		r.settle(context.Background(), h, outcome{kind: outRelease})
	}
	if len(hs) > 0 {
		r.log.Info("handed unapplied events back for redelivery", zap.Int("events", len(hs)))
	}
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, c clock.WithTicker, d time.Duration, fn func()) {
	t := c.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			fn()
		}
	}
}

// gauges samples the queue, the waiting events and the consumers.
func (r *Runner) gauges(ctx context.Context) {
	pending := r.queue.Pending()
	waiting := r.waiting.counts()
	for l := lane(0); l < numLanes; l++ {
		r.m.QueueDepth.WithLabelValues(l.String()).Set(float64(pending[l]))
		r.m.HeldEvents.WithLabelValues(l.String()).Set(float64(waiting[l]))
	}
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if ci, err := (*r.consumer.Load()).Info(ictx); err == nil {
		r.ackFloor.Store(ci.AckFloor.Stream)
		r.m.ConsumerPending.WithLabelValues(laneLive.String()).Set(float64(ci.NumPending))
		if ci.NumPending == 0 {
			r.backlog.Store(false)
		}
	}
	if ci, err := r.res.BackfillConsumer.Info(ictx); err == nil {
		r.m.ConsumerPending.WithLabelValues(laneBackfill.String()).Set(float64(ci.NumPending))
		r.m.BackfillPending.Set(float64(ci.NumPending + uint64(ci.NumAckPending)))
	}
}

// consume starts pulling from cons.
func (r *Runner) consume(cons jetstream.Consumer) (jetstream.MessagesContext, error) {
	it, err := cons.Messages(jetstream.PullMaxMessages(r.cfg.FetchBatch))
	if err != nil {
		return nil, fmt.Errorf("consuming %s: %w", r.cfg.Consumer, err)
	}
	return it, nil
}
