package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"go.uber.org/zap"
)

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
	nc := r.conn()
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
