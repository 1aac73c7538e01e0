package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// API is what the pipeline needs of the Cloudflare client.
type API interface {
	GetSettings(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error)
	PatchSettings(ctx context.Context, ref cfapi.ScriptRef, p cfapi.SettingsPatch) (*cfapi.Settings, error)
	GetScriptContent(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.ScriptContent, error)
	UploadScript(ctx context.Context, ref cfapi.ScriptRef, u cfapi.ScriptUpload) (*cfapi.UploadResult, error)
	CreateVersion(ctx context.Context, ref cfapi.ScriptRef, u cfapi.ScriptUpload) (*cfapi.Version, error)
	DeployVersion(ctx context.Context, ref cfapi.ScriptRef, versionID, message string) (*cfapi.Deployment, error)
}

// message is what the pipeline needs of a JetStream message.
type message interface {
	Data() []byte
	Subject() string
	Metadata() (*jetstream.MsgMetadata, error)
	Ack() error
	NakWithDelay(time.Duration) error
	InProgress() error
	TermWithReason(string) error
}

// Config configures a Runner.
type Config struct {
	SetupConfig
	// Concurrency is the number of scripts reconciled in parallel.
	Concurrency int
	// FetchBatch bounds how many events are pulled and folded at once
	// (default 256).
	FetchBatch int
	// CoalesceDelay is how long a script waits after its first event
	// before it is reconciled, so that a burst of events costs one
	// reconcile (default 100ms).
	CoalesceDelay time.Duration
	// ResyncInterval, when positive, reconciles every script in the
	// desired-state bucket that often, repairing drift made elsewhere.
	ResyncInterval time.Duration
	// ReconcileTimeout bounds one reconcile, budget waits included
	// (default 10 minutes).
	ReconcileTimeout time.Duration
	// NakDelay is the first redelivery delay after a transient failure;
	// it doubles per delivery up to MaxNakDelay (defaults 2s and 2m).
	NakDelay    time.Duration
	MaxNakDelay time.Duration
	// Owner names this replica in leases (default: random).
	Owner string
}

func (c Config) withDefaults() Config {
	c.SetupConfig = c.SetupConfig.WithDefaults()
	if c.Concurrency <= 0 {
		c.Concurrency = 16
	}
	if c.FetchBatch <= 0 {
		c.FetchBatch = 256
	}
	if c.CoalesceDelay < 0 {
		c.CoalesceDelay = 0
	} else if c.CoalesceDelay == 0 {
		c.CoalesceDelay = 100 * time.Millisecond
	}
	if c.ReconcileTimeout <= 0 {
		c.ReconcileTimeout = 10 * time.Minute
	}
	if c.NakDelay <= 0 {
		c.NakDelay = 2 * time.Second
	}
	if c.MaxNakDelay <= 0 {
		c.MaxNakDelay = 2 * time.Minute
	}
	if c.Owner == "" {
		c.Owner = fmt.Sprintf("replica-%08x", rand.Uint32())
	}
	return c
}

// Runner consumes events and reconciles scripts (ARCHITECTURE.md, "Data
// flow"). Events are hints: each one is folded into its script's desired
// state, held, and acknowledged only after a reconcile of that script that
// began after the fold has succeeded.
type Runner struct {
	cfg     Config
	res     *Resources
	api     API
	planner *planner.Planner
	m       *metrics.Metrics
	log     *zap.Logger

	queue *keyQueue

	mu      sync.Mutex
	scripts map[string]*scriptState
	// failures counts consecutive failed reconciles per script without
	// held events (resync), for backoff.
	failures map[string]int
}

// scriptState is the in-process state of one script: the events folded
// and waiting for a reconcile, and the fold counter that orders them
// against reconcile starts.
type scriptState struct {
	held    []*heldEvent
	foldSeq uint64
}

type heldEvent struct {
	msg       message
	event     *Event
	seq       uint64 // foldSeq after this event was folded
	delivered uint64
	streamSeq uint64
}

// NewRunner returns a runner over resources set up by EnsureStreams.
func NewRunner(cfg Config, res *Resources, api API, p *planner.Planner, m *metrics.Metrics, log *zap.Logger) *Runner {
	return &Runner{
		cfg: cfg.withDefaults(), res: res, api: api, planner: p, m: m, log: log,
		queue: newKeyQueue(), scripts: map[string]*scriptState{}, failures: map[string]int{},
	}
}

// Run consumes and reconciles until ctx is cancelled, then shuts down:
// intake stops, in-flight reconciles finish (or are cancelled when
// drainCtx ends), and every event not yet applied is handed back to
// JetStream for redelivery. It never acknowledges an event that was not
// applied.
func (r *Runner) Run(ctx context.Context, drainCtx func() context.Context) error {
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	// Watch for events JetStream gives up on before pulling any.
	if sub, err := r.watchMaxDeliveries(workCtx); err != nil {
		r.log.Warn("not watching max-deliveries advisories", zap.Error(err))
	} else {
		defer func() { _ = sub.Unsubscribe() }()
		_ = r.res.JS.Conn().Flush()
	}
	iter, err := r.res.Consumer.Messages(jetstream.PullMaxMessages(r.cfg.FetchBatch))
	if err != nil {
		return fmt.Errorf("consuming %s: %w", r.cfg.Consumer, err)
	}
	var iterMu sync.Mutex // guards iter, replaced when the consumer is recreated
	msgs := make(chan jetstream.Msg, r.cfg.FetchBatch)
	var intakeWG sync.WaitGroup
	intakeWG.Add(2)
	go func() { // pull loop
		defer intakeWG.Done()
		defer close(msgs)
		for {
			iterMu.Lock()
			it := iter
			iterMu.Unlock()
			m, err := it.Next()
			if err == nil {
				msgs <- m
				continue
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				return
			}
			r.log.Warn("pulling events", zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
				errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				// The consumer is gone (deleted, or lost in a restart):
				// recreate it and consume again rather than trusting the
				// iterator to resume.
				it.Stop()
				res, rerr := EnsureStreams(ctx, r.res.JS, r.cfg.SetupConfig)
				if rerr != nil {
					r.log.Error("recreating the consumer", zap.Error(rerr))
					continue
				}
				nit, rerr := res.Consumer.Messages(jetstream.PullMaxMessages(r.cfg.FetchBatch))
				if rerr != nil {
					r.log.Error("consuming again", zap.Error(rerr))
					continue
				}
				iterMu.Lock()
				iter = nit
				iterMu.Unlock()
				r.log.Info("consumer recreated")
			}
		}
	}()
	go func() { // fold loop: batches of what has arrived
		defer intakeWG.Done()
		for m := range msgs {
			batch := []message{m}
		drain:
			for len(batch) < r.cfg.FetchBatch {
				select {
				case m2, ok := <-msgs:
					if !ok {
						break drain
					}
					batch = append(batch, m2)
				default:
					break drain
				}
			}
			if ctx.Err() != nil {
				// Shutting down: hand undelivered work back at once.
				for _, m := range batch {
					_ = m.NakWithDelay(time.Second)
				}
				continue
			}
			r.intake(workCtx, batch)
		}
	}()

	var workers sync.WaitGroup
	for i := 0; i < r.cfg.Concurrency; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				key, ok := r.queue.Get()
				if !ok {
					return
				}
				r.process(workCtx, key)
				r.queue.Done(key)
			}
		}()
	}
	go r.heartbeat(ctx)
	if r.cfg.ResyncInterval > 0 {
		go r.resyncLoop(ctx)
	}
	go r.gauges(ctx)

	<-ctx.Done()
	r.log.Info("shutting down: stopping intake")
	iterMu.Lock()
	iter.Drain()
	iterMu.Unlock()
	intakeWG.Wait()
	r.queue.ShutDown()

	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	dctx := context.Background()
	if drainCtx != nil {
		dctx = drainCtx()
	}
	select {
	case <-done:
	case <-dctx.Done():
		r.log.Warn("shutdown timeout: cancelling in-flight reconciles")
		cancelWork()
		<-done
	}
	// Everything still held was folded but not applied: redeliver it.
	r.mu.Lock()
	n := 0
	for key, st := range r.scripts {
		for _, h := range st.held {
			_ = h.msg.NakWithDelay(time.Second)
			n++
		}
		delete(r.scripts, key)
	}
	r.mu.Unlock()
	if n > 0 {
		r.log.Info("handed unapplied events back for redelivery", zap.Int("events", n))
	}
	return nil
}

// intake decodes a batch, dead-letters bad input, folds the rest into the
// desired state (one compare-and-set per script) and queues the scripts.
func (r *Runner) intake(ctx context.Context, batch []message) {
	type pending struct {
		msg   message
		event *Event
		meta  *jetstream.MsgMetadata
	}
	groups := map[string][]pending{}
	var order []string
	for _, m := range batch {
		r.m.EventsReceived.Inc()
		meta, err := m.Metadata()
		if err != nil {
			r.log.Error("event without JetStream metadata", zap.Error(err))
			_ = m.TermWithReason("no metadata")
			continue
		}
		if meta.NumDelivered > 1 {
			r.m.EventRedeliveries.Inc()
		}
		ev, err := DecodeEvent(m.Data(), m.Subject(), r.cfg.SubjectPrefix, r.planner)
		if err != nil {
			var ie *InvalidEventError
			reason := ReasonInvalidJSON
			if errors.As(err, &ie) {
				reason = ie.Reason
			}
			r.deadLetter(ctx, m, nil, meta, reason, err)
			continue
		}
		key := ev.Key()
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], pending{msg: m, event: ev, meta: meta})
	}
	for _, key := range order {
		group := groups[key]
		events := make([]*Event, len(group))
		for i, p := range group {
			events[i] = p.event
		}
		results, _, err := r.res.stores.fold(ctx, key, events)
		if err != nil {
			r.log.Error("folding events", zap.String("script", key), zap.Error(err))
			for _, p := range group {
				if int(p.meta.NumDelivered) >= r.cfg.MaxDeliver {
					r.deadLetter(ctx, p.msg, p.event, p.meta, "max_deliveries",
						fmt.Errorf("could not store the desired state after %d deliveries: %w", p.meta.NumDelivered, err))
					continue
				}
				_ = p.msg.NakWithDelay(r.nakDelay(p.meta.NumDelivered))
			}
			continue
		}
		held := 0
		r.mu.Lock()
		st := r.script(key)
		for i, p := range group {
			res := results[i]
			if res.Stale > 0 {
				r.m.StaleOperations.Add(float64(res.Stale))
			}
			if res.AllStale() {
				// Nothing of it can apply: newer operations already hold
				// every name it touches.
				_ = p.msg.Ack()
				r.m.EventsTotal.WithLabelValues(metrics.OutcomeStale).Inc()
				r.log.Debug("stale event acknowledged", zap.String("event_id", p.event.ID), zap.String("script", key), zap.Int("stale_ops", res.Stale))
				continue
			}
			st.foldSeq++
			st.held = append(st.held, &heldEvent{msg: p.msg, event: p.event, seq: st.foldSeq,
				delivered: p.meta.NumDelivered, streamSeq: p.meta.Sequence.Stream})
			held++
		}
		r.mu.Unlock()
		if held > 0 {
			r.queue.AddAfter(key, r.cfg.CoalesceDelay)
		}
	}
}

// script returns the state of key; r.mu must be held.
func (r *Runner) script(key string) *scriptState {
	st, ok := r.scripts[key]
	if !ok {
		st = &scriptState{}
		r.scripts[key] = st
	}
	return st
}

// process reconciles one script and settles its held events: the single
// place where an outcome becomes Ack, NakWithDelay or dead letter + Term.
func (r *Runner) process(ctx context.Context, key string) {
	r.mu.Lock()
	startSeq := r.script(key).foldSeq
	r.mu.Unlock()

	r.m.InflightReconciles.Inc()
	start := time.Now()
	res, err := r.reconcile(ctx, key)
	r.m.InflightReconciles.Dec()
	r.m.ReconcileDuration.Observe(time.Since(start).Seconds())

	log := r.log.With(zap.String("script", key))
	var term *TerminalError
	switch {
	case err == nil && res.LeaseBusy:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultLeaseBusy).Inc()
		r.queue.AddAfter(key, 200*time.Millisecond+time.Duration(rand.Int64N(int64(300*time.Millisecond))))
	case err == nil:
		outcome := metrics.OutcomeNoop
		result := metrics.ResultNoop
		if res.Wrote {
			outcome, result = metrics.OutcomeApplied, metrics.ResultApplied
		}
		r.m.ReconcileTotal.WithLabelValues(result).Inc()
		r.m.LastSuccess.SetToCurrentTime()
		acked := r.settle(key, startSeq, func(h *heldEvent) {
			_ = h.msg.Ack()
			r.m.EventsTotal.WithLabelValues(outcome).Inc()
			if h.event.OccurredAt != nil {
				r.m.EventLag.Observe(time.Since(*h.event.OccurredAt).Seconds())
			}
		})
		r.mu.Lock()
		delete(r.failures, key)
		r.mu.Unlock()
		log.Info("reconciled", zap.String("result", result), zap.String("strategy", string(res.Strategy)),
			zap.Int("events_acked", acked), zap.Duration("took", time.Since(start)))
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// Shutting down: Run hands held events back.
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
	case errors.As(err, &term):
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultPermanent).Inc()
		log.Error("reconcile failed permanently", zap.String("reason", term.Reason), zap.Error(err))
		r.settle(key, startSeq, func(h *heldEvent) {
			r.deadLetter(ctx, h.msg, h.event, nil, term.Reason, err)
		})
	default:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
		log.Warn("reconcile failed, will retry", zap.Error(err))
		n := r.settle(key, startSeq, func(h *heldEvent) {
			if int(h.delivered) >= r.cfg.MaxDeliver {
				r.deadLetter(ctx, h.msg, h.event, nil, "max_deliveries",
					fmt.Errorf("still failing after %d deliveries: %w", h.delivered, err))
				return
			}
			_ = h.msg.NakWithDelay(r.nakDelay(h.delivered))
		})
		if n == 0 {
			// A resync or lease-follow-up reconcile holds no event: retry it
			// from the queue with backoff.
			r.mu.Lock()
			r.failures[key]++
			f := r.failures[key]
			r.mu.Unlock()
			if f <= r.cfg.MaxDeliver {
				r.queue.AddAfter(key, r.nakDelay(uint64(f)))
			}
		}
	}
}

// settle removes the held events of key folded before the reconcile began
// (seq ≤ startSeq) and calls fn on each; it returns how many.
func (r *Runner) settle(key string, startSeq uint64, fn func(*heldEvent)) int {
	r.mu.Lock()
	st := r.script(key)
	var done []*heldEvent
	kept := st.held[:0]
	for _, h := range st.held {
		if h.seq <= startSeq {
			done = append(done, h)
		} else {
			kept = append(kept, h)
		}
	}
	st.held = kept
	if len(st.held) == 0 {
		delete(r.scripts, key)
	}
	r.mu.Unlock()
	for _, h := range done {
		fn(h)
	}
	return len(done)
}

// nakDelay is the redelivery delay after the n-th delivery failed.
func (r *Runner) nakDelay(n uint64) time.Duration {
	d := r.cfg.NakDelay
	for i := uint64(1); i < n && d < r.cfg.MaxNakDelay; i++ {
		d *= 2
	}
	d = min(d, r.cfg.MaxNakDelay)
	// ±20% jitter so that a burst of failures does not come back at once.
	return d - d/5 + time.Duration(rand.Int64N(int64(d/5*2)+1))
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// heartbeat keeps held events alive (InProgress) while their script waits
// for a reconcile, so that AckWait never redelivers them meanwhile.
func (r *Runner) heartbeat(ctx context.Context) {
	every(ctx, max(r.cfg.AckWait/3, 100*time.Millisecond), func() {
		r.mu.Lock()
		var msgs []message
		for _, st := range r.scripts {
			for _, h := range st.held {
				msgs = append(msgs, h.msg)
			}
		}
		r.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	})
}

func (r *Runner) gauges(ctx context.Context) {
	every(ctx, time.Second, func() {
		r.m.QueueDepth.WithLabelValues(metrics.LaneLive).Set(float64(r.queue.Pending()))
		r.mu.Lock()
		n := 0
		for _, st := range r.scripts {
			n += len(st.held)
		}
		r.mu.Unlock()
		r.m.HeldEvents.WithLabelValues(metrics.LaneLive).Set(float64(n))
	})
}

// resyncLoop queues every script of the desired-state bucket periodically.
func (r *Runner) resyncLoop(ctx context.Context) {
	every(ctx, r.cfg.ResyncInterval, func() {
		n, err := r.Resync(ctx)
		if err != nil {
			r.log.Warn("resync", zap.Error(err))
			return
		}
		r.log.Info("resync queued scripts", zap.Int("scripts", n))
	})
}

// Resync queues a reconcile of every script in the desired-state bucket.
func (r *Runner) Resync(ctx context.Context) (int, error) {
	lister, err := r.res.stores.desired.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for key := range lister.Keys() {
		if strings.Count(key, ".") == 2 {
			r.queue.Add(key)
			n++
		}
	}
	return n, nil
}
