package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/metrics"
)

// outcomeKind is how an event ends, or that it is handed back.
type outcomeKind int

const (
	// outAck: applied, no-op or stale; acknowledged.
	outAck outcomeKind = iota
	// outRetry: a transient failure; redelivered after a backoff, and
	// dead-lettered once its deliveries run out.
	outRetry
	// outDeadLetter: cannot be applied; recorded in the dead-letter
	// stream, then terminated.
	outDeadLetter
	// outRelease: not applied because the process is stopping; handed back
	// for redelivery.
	outRelease
)

// event.Event outcomes of acknowledged events (the outcome label of
// reconciler_events_total).
const (
	outcomeApplied = metrics.OutcomeApplied
	outcomeNoop    = metrics.OutcomeNoop
	outcomeStale   = metrics.OutcomeStale
)

// outcome is what happens to one event.
type outcome struct {
	kind   outcomeKind
	label  string       // outAck: applied, noop or stale
	wrote  bool         // outAck: its script was changed (a backfill result)
	reason event.Reason // outDeadLetter
	err    error        // outRetry, outDeadLetter
}

func ackOutcome(label string, wrote bool) outcome {
	return outcome{kind: outAck, label: label, wrote: wrote}
}
func retryOutcome(err error) outcome { return outcome{kind: outRetry, err: err} }
func deadLetterOutcome(reason event.Reason, err error) outcome {
	return outcome{kind: outDeadLetter, reason: reason, err: err}
}

// settle is the one place where an event's outcome becomes Ack,
// NakWithDelay or dead letter + TermWithReason (STYLE.md rule 3). A bare
// Nak is never used. A backfill item's result is recorded before its
// message is acknowledged or terminated.
func (r *Runner) settle(ctx context.Context, h *waitingEvent, o outcome) {
	switch o.kind {
	case outAck:
		if h.lane == laneBackfill {
			res := state.ResultUnchanged
			if o.wrote {
				res = state.ResultChanged
			}
			if err := r.publishResult(ctx, h, res, "", ""); err != nil {
				r.log.Warn("recording a backfill result failed; the item will be redelivered", zap.Error(err))
				_ = h.ack.NakWithDelay(r.cfg.nakDelay(h.delivered))
				return
			}
		}
		_ = h.ack.Ack()
		r.m.EventsTotal.WithLabelValues(o.label).Inc()
		if !h.occurredAt.IsZero() && o.label != outcomeStale {
			r.m.EventLag.Observe(r.clock.Since(h.occurredAt).Seconds())
		}
	case outRetry:
		if int(h.delivered) >= r.cfg.MaxDeliver {
			r.settle(ctx, h, deadLetterOutcome(event.ReasonMaxDeliveries,
				fmt.Errorf("still failing after %d deliveries: %w", h.delivered, o.err)))
			return
		}
		_ = h.ack.NakWithDelay(r.cfg.nakDelay(h.delivered))
	case outDeadLetter:
		rec := r.deadLetterRecord(ctx, h, o.reason, o.err)
		dup, err := r.publishDeadLetter(ctx, rec, h.delivered)
		if err != nil {
			r.log.Error("dead-letter publish failed; the event will be redelivered", zap.String("subject", rec.Subject), zap.Error(err))
			_ = h.ack.NakWithDelay(r.cfg.nakDelay(h.delivered))
			return
		}
		if h.lane == laneBackfill {
			if h.backfill == nil {
				h.backfill = r.backfillItemOf(rec.Subject)
			}
			if err := r.publishResult(ctx, h, state.ResultFailed, o.reason, rec.Error); err != nil {
				r.log.Warn("recording a failed backfill result", zap.Error(err))
			}
		}
		_ = h.ack.TermWithReason(string(o.reason))
		if !dup {
			r.m.DeadLetters.WithLabelValues(string(rec.Reason)).Inc()
			r.m.EventsTotal.WithLabelValues(metrics.OutcomeDeadLettered).Inc()
			r.log.Warn("event dead-lettered", zap.String("event_id", rec.EventID), zap.String("subject", rec.Subject),
				zap.String("reason", string(rec.Reason)), zap.String("error", rec.Error))
		}
	case outRelease:
		_ = h.ack.NakWithDelay(time.Second)
	}
}

// deadLetterRecord builds the record of h: from the body it came with, or
// read back from its stream by sequence.
func (r *Runner) deadLetterRecord(ctx context.Context, h *waitingEvent, reason event.Reason, cause error) state.DeadLetter {
	body, subject := h.body, h.subject
	if body == nil && h.streamSeq > 0 {
		if raw, err := r.streamOf(h).GetMsg(ctx, h.streamSeq); err == nil {
			body, subject = raw.Data, raw.Subject
		} else {
			r.log.Warn("reading a dead-lettered event back from its stream", zap.Uint64("stream_seq", h.streamSeq), zap.Error(err))
		}
	}
	rec := state.NewDeadLetter(body, subject, h.stream, h.streamSeq, h.delivered, reason, cause)
	if rec.EventID == "" {
		rec.EventID = h.id
	}
	return rec
}

// streamOf returns the stream h was delivered from.
func (r *Runner) streamOf(h *waitingEvent) jetstream.Stream {
	if h.stream == r.cfg.BackfillStream {
		return r.res.Backfill
	}
	return r.res.Stream
}
