package jobs

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/reconcile"
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
// NakWithDelay or dead letter + TermWithReason. A bare
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
			if err := r.results.store(ctx, h, res, "", ""); err != nil {
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
			reason := event.ReasonMaxDeliveries
			if errors.Is(o.err, cfapi.ErrBadResponse) {
				// The API neither accepted nor refused the change: what
				// answered was not the API.
				reason = event.ReasonBadResponse
			}
			r.settle(ctx, h, deadLetterOutcome(reason,
				fmt.Errorf("still failing after %d deliveries: %w", h.delivered, o.err)))
			return
		}
		_ = h.ack.NakWithDelay(r.cfg.nakDelay(h.delivered))
	case outDeadLetter:
		rec := r.dlq.record(ctx, h, o.reason, o.err)
		dup, err := r.dlq.publish(ctx, rec, h.delivered)
		if err != nil {
			r.log.Error("dead-letter publish failed; the event will be redelivered", zap.String("subject", rec.Subject), zap.Error(err))
			_ = h.ack.NakWithDelay(r.cfg.nakDelay(h.delivered))
			return
		}
		if h.lane == laneBackfill {
			if h.backfill == nil {
				h.backfill = r.results.itemOf(rec.Subject)
			}
			if err := r.results.store(ctx, h, state.ResultFailed, o.reason, rec.Error); err != nil {
				// Terminating now would lose the result and leave the run
				// waiting for it for ever: the item comes back instead.
				r.log.Warn("recording a failed backfill result failed; the item will be redelivered", zap.Error(err))
				_ = h.ack.NakWithDelay(r.cfg.nakDelay(h.delivered))
				return
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

// work is one worker: it reconciles the scripts the queue hands out until
// the queue shuts down.
func (r *Runner) work(ctx context.Context) {
	for {
		key, l, ok := r.queue.Get()
		if !ok {
			return
		}
		r.process(ctx, key, l)
		r.queue.Done(key)
	}
}

// process reconciles one script and settles its waiting events: the one
// switch from a reconcile's (Result, error) to what happens to them and to
// the script's place in the queue (which owns the per-script backoff).
func (r *Runner) process(ctx context.Context, key string, l lane) {
	if wait := r.auth.wait(); wait > 0 {
		r.queue.AddAfter(key, l, wait)
		return
	}
	minRevision, eventID := r.waiting.snapshot(key)
	log := scriptLogger(r.log, key, eventID, l)
	ctx = reconcile.WithLogger(laneContext(ctx, l), log)
	r.m.InflightReconciles.Inc()
	start := r.clock.Now()
	res, err := r.reconcileSafely(ctx, key, minRevision, log)
	took := r.clock.Since(start)
	r.m.InflightReconciles.Dec()
	r.m.ReconcileDuration.Observe(took.Seconds())

	if err != nil && !reconcile.IsAuthFailure(err) || err == nil && res.Requeue {
		r.auth.inconclusive()
	}
	var term *reconcile.TerminalError
	switch {
	case err == nil && res.Requeue:
		r.m.ReconcileTotal.WithLabelValues(requeuedMetric(res)).Inc()
		if res.Held != "" {
			r.m.ScriptsHeld.WithLabelValues(res.Held).Inc()
		}
		r.queue.AddAfter(key, l, res.RequeueAfter)
	case err == nil:
		r.succeeded(ctx, key, l, res, took, log)
	case reconcile.IsAuthFailure(err) && ctx.Err() == nil:
		r.authFailed(ctx, key, l, minRevision, err, log)
	case errors.As(err, &term) && ctx.Err() == nil:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultPermanent).Inc()
		log.Error("reconcile failed permanently", zap.String("reason", string(term.Reason)), zap.Error(err))
		for _, h := range r.waiting.take(key, minRevision) {
			r.settle(ctx, h, deadLetterOutcome(term.Reason, err))
		}
	default:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
		if ctx.Err() != nil {
			return // shutting down: Run hands the waiting events back
		}
		log.Warn("reconcile failed, will retry", zap.Error(err))
		r.retryWaiting(ctx, key, l, minRevision, err)
	}
}

// authFailed handles a reconcile the API refused for its credentials, by
// the scope of the refusal (accountScopes): one account outside the
// token's scope dead-letters that account's events; a verification that
// itself failed retries like a transient failure; a token that fails
// verification closes the auth gate and keeps every event.
func (r *Runner) authFailed(ctx context.Context, key string, l lane, minRevision uint64, err error, log *zap.Logger) {
	switch r.scopes.scope(ctx, key) {
	case scopeAccount:
		// The token verifies, so the API refused this account (outside
		// the token's scope): its events cannot apply until someone grants
		// it; every other tenant goes on.
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultPermanent).Inc()
		log.Error("the API token verifies but cannot reach this account: its events are dead-lettered", zap.Error(err))
		r.queue.Forget(key)
		for _, h := range r.waiting.take(key, minRevision) {
			r.settle(ctx, h, deadLetterOutcome(event.ReasonForbiddenAccount,
				fmt.Errorf("the API token verifies but the API refuses this account: %w", err)))
		}
	case scopeUnknown:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
		log.Warn("auth failure, and the token could not be verified: will retry", zap.Error(err))
		r.auth.inconclusive()
		r.retryWaiting(ctx, key, l, minRevision, err)
	default:
		// The token itself fails verification: no event is to blame. Stop
		// taking work (readiness fails), keep the events, try again later.
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
		r.scopes.tokenFailed()
		if r.auth.fail(err) {
			log.Error("the Cloudflare API rejects the credentials: reconciles are paused, events are kept", zap.Error(err),
				zap.Duration("retry_in", r.auth.wait()))
		}
		r.queue.AddAfter(key, l, r.auth.wait())
	}
}

// retryWaiting hands the events a failed reconcile covered back for
// redelivery after a backoff, or, with none to redeliver (a resync, a
// recovery, or events that another replica holds), retries the script from
// the queue with backoff.
func (r *Runner) retryWaiting(ctx context.Context, key string, l lane, minRevision uint64, err error) {
	hs := r.waiting.take(key, minRevision)
	for _, h := range hs {
		r.settle(ctx, h, retryOutcome(err))
	}
	if len(hs) == 0 {
		r.queue.AddRateLimited(key, l)
	}
}

// succeeded settles the waiting events a successful reconcile covered.
func (r *Runner) succeeded(ctx context.Context, key string, l lane, res reconcile.Result, took time.Duration, log *zap.Logger) {
	result := metrics.ResultNoop
	if res.Wrote {
		result = metrics.ResultApplied
	}
	r.m.ReconcileTotal.WithLabelValues(result).Inc()
	r.m.LastSuccess.SetToCurrentTime()
	r.auth.ok()
	r.queue.Forget(key)
	hs := r.waiting.take(key, res.Revision)
	for _, h := range hs {
		r.settle(ctx, h, outcomeFor(res, h))
	}
	r.history.record(ctx, key, l, res, hs, log)
	// A no-op is routine; a write is news.
	level := zap.DebugLevel
	if res.Wrote {
		level = zap.InfoLevel
	}
	if ce := log.Check(level, "reconciled"); ce != nil {
		ce.Write(zap.String("result", result), zap.String("strategy", string(res.Strategy)),
			zap.Strings("changed", changedBindings(res.Changes)),
			zap.Int("events_settled", len(hs)), zap.Duration("took", took))
	}
}

// scriptLogger returns the child logger of one reconcile: the script's
// account, namespace and name, its lane, and the newest waiting event.
func scriptLogger(log *zap.Logger, key, eventID string, l lane) *zap.Logger {
	fields := []zap.Field{zap.String("script_key", key), zap.Stringer("lane", l)}
	if ref, err := event.ParseScriptKey(key); err == nil {
		fields = append(fields, zap.String("account", ref.AccountID), zap.String("namespace", ref.Namespace), zap.String("script", ref.Script))
	}
	if eventID != "" {
		fields = append(fields, zap.String("event_id", eventID))
	}
	return log.With(fields...)
}

// reconcileSafely is reconcile with a panic turned into an error: a bug
// met by one script's data must not kill the process with every other
// event waiting.
func (r *Runner) reconcileSafely(ctx context.Context, key string, minRevision uint64, log *zap.Logger) (res reconcile.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.m.PanicsRecovered.Inc()
			log.Error("reconcile panicked", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			res, err = reconcile.Result{}, fmt.Errorf("reconcile panicked: %v", p)
		}
	}()
	return r.rec.Reconcile(ctx, key, minRevision)
}

// requeuedMetric is the result label of reconciler_reconcile_total for a
// requeued reconcile.
func requeuedMetric(res reconcile.Result) string {
	switch {
	case res.Held != "":
		return metrics.ResultHeld
	case res.Quarantined:
		return metrics.ResultPermanent
	}
	return metrics.ResultLeaseBusy
}

// outcomeFor returns how event h ends after the reconcile res succeeded:
// dead-lettered when all of its operations are quarantined, applied or
// no-op otherwise.
func outcomeFor(res reconcile.Result, h *waitingEvent) outcome {
	if res.State != nil && h.id != "" {
		if q := res.State.Quarantined(h.id); q != nil {
			return deadLetterOutcome(q.Reason, errors.New(q.Error))
		}
	}
	wrote := res.Wrote
	if h.lane == laneBackfill && res.Record != nil {
		// Changed when its own operations were written, by this reconcile
		// or by an earlier one (before a crash and a resume).
		wrote = res.Record.Wrote(h.id)
	}
	if res.Wrote {
		return ackOutcome(outcomeApplied, wrote)
	}
	return ackOutcome(outcomeNoop, wrote)
}

// laneContext marks the API calls of a reconcile with its lane, so that
// the budget serves live work first.
func laneContext(ctx context.Context, l lane) context.Context {
	if l == laneBackfill {
		return ratelimit.WithPriority(ctx, ratelimit.PriorityBackfill)
	}
	return ratelimit.WithPriority(ctx, ratelimit.PriorityLive)
}
