package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"go.uber.org/zap"
)

// Large intake batches are what make a storm cheap: the events of one
// script in a batch cost one compare-and-set (the batch commit). A batch
// takes what pull has delivered within batchWindow of its first message,
// up to maxIntakeBatch messages; a quiet system folds each event at once.
const (
	batchWindow    = 20 * time.Millisecond
	maxIntakeBatch = 8192
)

// intake is the live lane's intake loop: it takes what pull has delivered in
// batches and folds each batch. Folding needs no API call, so it never
// waits on reconciles. When ctx ends it hands back what it has not
// folded; a batch it started is finished with workCtx.
func (r *Runner) intake(ctx, workCtx context.Context, in <-chan jetstream.Msg) {
	batch := make([]message, 0, maxIntakeBatch)
	timer := r.clock.NewTimer(batchWindow)
	defer timer.Stop()
	for m := range in {
		batch = append(batch[:0], m)
		timer.Reset(batchWindow)
	gather:
		for len(batch) < maxIntakeBatch {
			select {
			case m2, ok := <-in:
				if !ok {
					break gather
				}
				batch = append(batch, m2)
			default:
				// Nothing waiting: fold now unless more is on its way
				// (a backlog), then wait for it within the window.
				if !r.backlog.Load() {
					break gather
				}
				select {
				case m2, ok := <-in:
					if !ok {
						break gather
					}
					batch = append(batch, m2)
				case <-timer.C():
					break gather
				}
			}
		}
		if ctx.Err() != nil {
			for _, m := range batch {
				_ = m.NakWithDelay(time.Second)
			}
			continue
		}
		r.intakeBatch(workCtx, batch, laneLive)
	}
}

// received is one delivered message on its way to waiting.
type received struct {
	msg   message
	meta  *jetstream.MsgMetadata
	event *event.Event
	item  *backfillItem // backfill work only
}

// intakeBatch decodes a batch of messages, dead-letters bad input, folds the
// events of each script with one compare-and-set, and keeps waiting the events
// whose fold may need applying (stale and already-applied events are
// acknowledged at once).
func (r *Runner) intakeBatch(ctx context.Context, batch []message, l lane) {
	decoded := r.decodeAll(ctx, batch, l)
	if l == laneLive {
		// The last message says whether more are waiting to be folded.
		if meta, err := batch[len(batch)-1].Metadata(); err == nil {
			r.backlog.Store(meta.NumPending > 0)
		}
	}
	groups := map[string][]received{}
	var order []string
	for _, rc := range decoded {
		if rc.event == nil {
			continue
		}
		key := rc.event.Key()
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], rc)
	}
	if len(order) == 0 {
		return
	}
	jobs := make([]*state.ScriptBatch, len(order))
	for i, key := range order {
		job := &state.ScriptBatch{Key: key}
		for _, rc := range groups[key] {
			job.Events = append(job.Events, rc.event)
		}
		jobs[i] = job
	}
	r.st.Commit(ctx, jobs, r.maxState)
	for _, job := range jobs {
		r.waitFolded(ctx, job, groups[job.Key], l)
	}
}

// decodeAll decodes a batch, on every core when it is large (decoding is
// most of the fold stage's CPU), and returns the received messages in
// batch order; bad input is settled and has no event.
func (r *Runner) decodeAll(ctx context.Context, batch []message, l lane) []received {
	out := make([]received, len(batch))
	workers := min(runtime.GOMAXPROCS(0), len(batch)/64+1)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(batch); i += workers {
				if rc, ok := r.decode(ctx, batch[i], l); ok {
					out[i] = rc
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// decode reads one message's metadata and event. Bad input is
// dead-lettered here and ok is false.
func (r *Runner) decode(ctx context.Context, m message, l lane) (rc received, ok bool) {
	r.m.EventsReceived.Inc()
	meta, err := m.Metadata()
	if err != nil {
		r.log.Error("event without JetStream metadata", zap.Error(err))
		_ = m.TermWithReason("no metadata")
		return rc, false
	}
	if meta.NumDelivered > 1 {
		r.m.EventRedeliveries.Inc()
	}
	rc = received{msg: m, meta: meta}
	defer func() {
		if p := recover(); p != nil {
			r.m.PanicsRecovered.Inc()
			r.log.Error("panic decoding an event", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			r.settle(ctx, r.newWaiting(rc, l, 0), deadLetterOutcome(event.ReasonPanic, fmt.Errorf("decoding the event panicked: %v", p)))
			ok = false
		}
	}()
	if l == laneBackfill {
		rc.item, rc.event, err = decodeBackfillItem(m, r.cfg.BackfillPrefix)
	} else {
		rc.event, err = event.DecodeEvent(m.Data(), m.Subject(), r.cfg.SubjectPrefix)
	}
	if err == nil {
		rc.event.StoredAt = meta.Timestamp.UnixNano()
	}
	if err != nil {
		reason := event.ReasonInvalidJSON
		var ie *event.InvalidEventError
		if errors.As(err, &ie) {
			reason = ie.Reason
		}
		r.settle(ctx, r.newWaiting(rc, l, 0), deadLetterOutcome(reason, err))
		return rc, false
	}
	return rc, true
}

// newWaiting returns the waiting form of a received message.
func (r *Runner) newWaiting(rc received, l lane, foldRev uint64) *waitingEvent {
	h := &waitingEvent{ack: compactAcker(r.nc, rc.msg), lane: l, foldRev: foldRev, backfill: rc.item}
	if rc.meta != nil {
		h.stream, h.streamSeq, h.delivered = rc.meta.Stream, rc.meta.Sequence.Stream, rc.meta.NumDelivered
	}
	if rc.event != nil {
		h.id = rc.event.ID
		if rc.event.OccurredAt != nil {
			h.occurredAt = *rc.event.OccurredAt
		}
	} else {
		h.body, h.subject = rc.msg.Data(), rc.msg.Subject()
	}
	return h
}

// waitFolded settles the events of one folded script or keeps them waiting.
func (r *Runner) waitFolded(ctx context.Context, job *state.ScriptBatch, group []received, l lane) {
	if job.Err != nil {
		r.log.Error("folding events", zap.String("script", job.Key), zap.Error(job.Err))
		for _, rc := range group {
			r.settle(ctx, r.newWaiting(rc, l, 0), retryOutcome(fmt.Errorf("could not store the desired state: %w", job.Err)))
		}
		return
	}
	r.m.EventsFolded.Add(float64(len(group)))
	var applied *state.AppliedRecord // read once, for duplicates only
	var wait []*waitingEvent
	for i, rc := range group {
		res := job.Results[i]
		if res.Stale > 0 {
			r.m.StaleOperations.Add(float64(res.Stale))
		}
		h := r.newWaiting(rc, l, job.Rev)
		switch {
		case job.Rejected[i] != nil:
			reason := event.ReasonInvalidBinding
			if errors.Is(job.Rejected[i], state.ErrStateTooLarge) {
				reason = event.ReasonTooLarge
			}
			r.settle(ctx, h, deadLetterOutcome(reason, job.Rejected[i]))
		case res.AllStale():
			// Nothing of it can apply: newer operations already hold every
			// name it touches.
			r.settle(ctx, h, ackOutcome(outcomeStale, false))
		case !res.Changed() && (l == laneLive || rc.item.skipUnmodified && rc.item.modifiedOn != ""):
			// Folded before (a redelivery, a duplicate, or a backfill of
			// what is desired already): if a reconcile has recorded a
			// write planned from this revision or a newer one, the event is
			// applied already. A backfill item also needs the listing to
			// show the script untouched since a read found it converged
			// (--skip-unmodified): then it costs no read at all.
			if applied == nil {
				if applied, _, _ = r.st.LoadApplied(ctx, job.Key); applied == nil {
					applied = &state.AppliedRecord{}
				}
			}
			if applied.DesiredRevision >= job.Rev && (l == laneLive || applied.ModifiedOn == rc.item.modifiedOn) {
				r.settle(ctx, h, ackOutcome(outcomeNoop, false))
				continue
			}
			wait = append(wait, h)
		default:
			wait = append(wait, h)
		}
	}
	if len(wait) == 0 {
		return
	}
	r.waiting.add(job.Key, wait...)
	if l == laneLive {
		r.queue.Debounce(job.Key, laneLive)
	} else {
		if m := wait[0].backfill.modifiedOn; m != "" {
			r.waiting.setModifiedOn(job.Key, m)
		}
		r.queue.Add(job.Key, laneBackfill)
	}
}

// pull is the live lane's intake: it hands every message the consumer
// delivers to fold, until ctx ends. When the consumer disappears (deleted
// by an operator, lost in a restart) it recreates it so that delivery
// resumes after the last acknowledged event rather than from the start of
// the stream.
func (r *Runner) pull(ctx context.Context, iter jetstream.MessagesContext, out chan<- jetstream.Msg) {
	defer close(out)
	stop := context.AfterFunc(ctx, iter.Drain)
	defer func() { stop(); iter.Stop() }()
	for {
		m, err := iter.Next()
		if err == nil {
			select {
			case out <- m:
			case <-ctx.Done():
				_ = m.NakWithDelay(time.Second)
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("pulling events", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-r.clock.After(time.Second):
		}
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			nit, err := r.recreateConsumer(ctx)
			if err != nil {
				r.log.Error("recreating the consumer", zap.Error(err))
				continue
			}
			stop()
			iter.Stop()
			iter = nit
			stop = context.AfterFunc(ctx, iter.Drain)
		}
	}
}

// recreateConsumer creates the live consumer again, starting after the
// last ack floor seen (or from the start of the stream when none was
// seen), and consumes from it.
func (r *Runner) recreateConsumer(ctx context.Context) (jetstream.MessagesContext, error) {
	live, _ := r.cfg.ConsumerConfigs()
	if floor := r.ackFloor.Load(); floor > 0 {
		if _, err := r.res.JS.Consumer(ctx, r.cfg.Stream, live.Durable); errors.Is(err, jetstream.ErrConsumerNotFound) {
			live.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			live.OptStartSeq = floor + 1
		}
	}
	cons, err := r.res.JS.CreateOrUpdateConsumer(ctx, r.cfg.Stream, live)
	if err != nil {
		return nil, err
	}
	r.consumer.Store(&cons)
	it, err := r.consume(cons)
	if err != nil {
		return nil, err
	}
	r.log.Info("consumer recreated", zap.Uint64("resume_after_seq", live.OptStartSeq))
	return it, nil
}

// maxDeliveriesAdvisory is the part of JetStream's
// io.nats.jetstream.advisory.v1.max_deliver advisory the runner reads.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries dead-letters the events JetStream gives up on by
// itself: an event whose deliveries all ended in an ack timeout (a process
// that keeps dying mid-reconcile) reaches MaxDeliver without the runner
// ever seeing a failure, and JetStream then only publishes an advisory.
// Every replica receives it; the record's Nats-Msg-Id makes the dead-letter
// stream keep one copy. It returns a function that stops watching.
func (r *Runner) watchMaxDeliveries(ctx context.Context) func() {
	nc := r.nc
	if nc == nil {
		return func() {}
	}
	var subs []*nats.Subscription
	for _, w := range []struct{ stream, consumer string }{
		{r.cfg.Stream, r.cfg.Consumer}, {r.cfg.BackfillStream, r.cfg.BackfillConsumer},
	} {
		subject := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", w.stream, w.consumer)
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) { r.onMaxDeliveries(ctx, m.Data) })
		if err != nil {
			r.log.Warn("not watching max-deliveries advisories", zap.Error(err))
			continue
		}
		subs = append(subs, sub)
	}
	_ = nc.Flush()
	return func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
}

func (r *Runner) onMaxDeliveries(ctx context.Context, data []byte) {
	var adv maxDeliveriesAdvisory
	if err := json.Unmarshal(data, &adv); err != nil || adv.StreamSeq == 0 {
		r.log.Warn("unreadable max-deliveries advisory", zap.Error(err))
		return
	}
	h := &waitingEvent{ack: noAck{}, stream: adv.Stream, streamSeq: adv.StreamSeq, delivered: adv.Deliveries}
	if adv.Stream == r.cfg.BackfillStream {
		h.lane = laneBackfill
	}
	r.settle(ctx, h, deadLetterOutcome(event.ReasonMaxDeliveries,
		fmt.Errorf("JetStream stopped redelivering after %d deliveries that were never acknowledged (ack timeouts)", adv.Deliveries)))
}

// noAck is the acker of an event JetStream has already given up on.
type noAck struct{}

func (noAck) Ack() error                       { return nil }
func (noAck) NakWithDelay(time.Duration) error { return nil }
func (noAck) InProgress() error                { return nil }
func (noAck) TermWithReason(string) error      { return nil }
