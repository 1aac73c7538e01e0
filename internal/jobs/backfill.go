package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"k8s.io/utils/clock"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/metrics"
)

// Backfill work is a second lane beside live events (docs/architecture.md,
// "Scale"): `reconciler backfill` enqueues one work item per script of a
// run in the backfill stream; runners pull items only while no live work
// waits and fewer than Config.BackfillInflight items are waiting, fold each
// like an event, reconcile the script on the backfill lane (its API calls
// come after live ones for the budget), record the script's result in the
// results stream, and only then acknowledge the item. So a backfill of any
// size holds a bounded number of unacknowledged messages, and a live event
// is never queued behind backfill work.

// backfillItem is what a work item says besides its event.
type backfillItem struct {
	run            string
	key            string
	modifiedOn     string // the namespace listing's modified_on, when listed
	skipUnmodified bool
}

// decodeBackfillItem decodes a work item: its event must be about the
// script its subject names.
func decodeBackfillItem(m message, prefix string) (*backfillItem, *event.Event, error) {
	run, key, ok := state.ParseBackfillSubject(m.Subject(), prefix)
	if !ok {
		return nil, nil, event.Invalidf(event.ReasonSubjectMismatch, "backfill item on subject %q (want %s.<run>.<account>.<namespace>.<script>)", m.Subject(), prefix)
	}
	item := &backfillItem{run: run, key: key}
	if h := m.Headers(); h != nil {
		item.modifiedOn = h.Get(state.HeaderListedModified)
		item.skipUnmodified = h.Get(state.HeaderSkipUnmodified) == "1"
	}
	ev, err := event.DecodeEvent(m.Data(), "", "")
	if err != nil {
		return item, nil, err
	}
	if ev.Key() != key {
		return item, nil, event.Invalidf(event.ReasonSubjectMismatch, "backfill item for %s arrived on subject %q", ev.Ref(), m.Subject())
	}
	return item, ev, nil
}

// pullBackfill is the backfill lane's intake: it fetches work items only
// while no live script waits for a worker and the lane holds fewer than
// BackfillInflight items, and folds them like events. It stops when ctx
// ends.
func (r *Runner) pullBackfill(ctx, workCtx context.Context) {
	idle := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-r.clock.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		room := r.cfg.BackfillInflight - r.waiting.counts()[laneBackfill]
		if room <= 0 || r.queue.Ready(laneLive) > 0 || r.auth.wait() > 0 {
			if !idle(20 * time.Millisecond) {
				return
			}
			continue
		}
		batch, err := r.res.BackfillConsumer.Fetch(room, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				r.log.Warn("fetching backfill work", zap.Error(err))
			}
			if !idle(time.Second) {
				return
			}
			continue
		}
		var msgs []message
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			r.log.Warn("fetching backfill work", zap.Error(err))
		}
		if len(msgs) > 0 {
			r.intakeBatch(workCtx, msgs, laneBackfill)
		}
	}
}

// backfillResults records the result of each backfill item in the
// results stream, before its message is settled.
type backfillResults struct {
	cfg   Config
	pub   publisher
	m     *metrics.Metrics
	clock clock.Clock
	log   *zap.Logger
}

// publish records the result of backfill item h.
func (b *backfillResults) publish(ctx context.Context, h *waitingEvent, outcome string, reason event.Reason, msg string) error {
	item := h.backfill
	if item == nil {
		return nil
	}
	res := state.BackfillResult{Run: item.run, Script: item.key, Outcome: outcome, Reason: reason, Error: msg, At: b.clock.Now().UTC()}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	m := nats.NewMsg(b.cfg.ResultsPrefix + "." + item.run + "." + item.key)
	m.Data = data
	if _, err := b.pub.PublishMsg(pctx, m); err != nil {
		return err
	}
	b.m.BackfillScripts.WithLabelValues(outcome).Inc()
	return nil
}

// resultAttempts bounds the tries of store; resultBackoff is the
// wait before the second, doubled for each one after.
const (
	resultAttempts = 4
	resultBackoff  = 50 * time.Millisecond
)

// store publishes a backfill result (publish), trying again
// after a short backoff when the results stream does not answer, so that
// a brief outage does not cost the item a delivery. An error means the
// result is not stored: the caller must hand the item back rather than
// settle it, or the run would wait for its result for ever. For an item a
// hand-back would not bring back (its last delivery, or one JetStream has
// given up on) it keeps trying, a round every resultPause with the
// message kept alive, until the result is stored or ctx ends.
func (b *backfillResults) store(ctx context.Context, h *waitingEvent, outcome string, reason event.Reason, msg string) error {
	_, gone := h.ack.(noAck)
	lastChance := gone || int(h.delivered) >= b.cfg.MaxDeliver
	var err error
	for i := 0; ; i++ {
		if i > 0 {
			wait := resultBackoff << (i - 1)
			if i >= resultAttempts {
				if !lastChance {
					return err
				}
				b.log.Warn("recording a backfill result failed on the item's last delivery; trying again", zap.Error(err))
				_ = h.ack.InProgress()
				wait = resultPause
			}
			select {
			case <-ctx.Done():
				if lastChance {
					b.log.Error("a backfill result was never recorded: its run waits for it until resumed", zap.Error(err))
				}
				return err
			case <-b.clock.After(wait):
			}
		}
		if err = b.publish(ctx, h, outcome, reason, msg); err == nil {
			return nil
		}
	}
}

// resultPause is the wait between the tries of store once its
// resultAttempts are spent on an item's last delivery.
const resultPause = time.Second

// itemOf rebuilds the item of a dead-lettered backfill message from its
// subject.
func (b *backfillResults) itemOf(subject string) *backfillItem {
	run, key, ok := state.ParseBackfillSubject(subject, b.cfg.BackfillPrefix)
	if !ok {
		return nil
	}
	return &backfillItem{run: run, key: key}
}
