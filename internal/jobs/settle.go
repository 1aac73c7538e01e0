package jobs

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
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
			if err := r.storeResult(ctx, h, res, "", ""); err != nil {
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
			if err := r.storeResult(ctx, h, state.ResultFailed, o.reason, rec.Error); err != nil {
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

// process reconciles one script and settles its held events: the one
// switch from a reconcile's (Result, error) to what happens to them and to
// the script's place in the queue (which owns the per-script backoff).
func (r *Runner) process(ctx context.Context, key string, l lane) {
	if wait := r.auth.wait(); wait > 0 {
		r.queue.AddAfter(key, l, wait)
		return
	}
	minRevision, eventID := r.waiting.snapshot(key)
	log := r.scriptLogger(key, eventID, l)
	ctx = withLogger(laneContext(ctx, l), log)
	r.m.InflightReconciles.Inc()
	start := r.clock.Now()
	res, err := r.reconcileSafely(ctx, key, minRevision, log)
	took := r.clock.Since(start)
	r.m.InflightReconciles.Dec()
	r.m.ReconcileDuration.Observe(took.Seconds())

	if err != nil && !isAuthFailure(err) || err == nil && res.Requeue {
		r.auth.inconclusive()
	}
	scope := scopeToken
	if isAuthFailure(err) && ctx.Err() == nil {
		scope = r.authScope(ctx, key)
	}
	var term *TerminalError
	switch {
	case err == nil && res.Requeue:
		r.m.ReconcileTotal.WithLabelValues(res.metricResult()).Inc()
		if res.Held != "" {
			r.m.ScriptsHeld.WithLabelValues(res.Held).Inc()
		}
		r.queue.AddAfter(key, l, res.RequeueAfter)
	case err == nil:
		r.succeeded(ctx, key, l, res, took, log)
	case isAuthFailure(err) && ctx.Err() == nil && scope == scopeAccount:
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
	case isAuthFailure(err) && ctx.Err() == nil && scope == scopeUnknown:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
		log.Warn("auth failure, and the token could not be verified: will retry", zap.Error(err))
		r.auth.inconclusive()
		r.retryHeld(ctx, key, l, minRevision, err)
	case isAuthFailure(err) && ctx.Err() == nil:
		// The token itself fails verification: no event is to blame. Stop
		// taking work (readiness fails), keep the events, try again later.
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
		r.scopes.tokenFailed()
		if r.auth.fail(err) {
			log.Error("the Cloudflare API rejects the credentials: reconciles are paused, events are kept", zap.Error(err),
				zap.Duration("retry_in", r.auth.wait()))
		}
		r.queue.AddAfter(key, l, r.auth.wait())
	case errors.As(err, &term) && ctx.Err() == nil:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultPermanent).Inc()
		log.Error("reconcile failed permanently", zap.String("reason", string(term.Reason)), zap.Error(err))
		for _, h := range r.waiting.take(key, minRevision) {
			r.settle(ctx, h, deadLetterOutcome(term.Reason, err))
		}
	default:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
		if ctx.Err() != nil {
			return // shutting down: Run hands the held events back
		}
		log.Warn("reconcile failed, will retry", zap.Error(err))
		r.retryHeld(ctx, key, l, minRevision, err)
	}
}

// retryHeld hands the events a failed reconcile covered back for
// redelivery after a backoff, or, with none to redeliver (a resync, a
// recovery, or events that another replica holds), retries the script from
// the queue with backoff.
func (r *Runner) retryHeld(ctx context.Context, key string, l lane, minRevision uint64, err error) {
	hs := r.waiting.take(key, minRevision)
	for _, h := range hs {
		r.settle(ctx, h, retryOutcome(err))
	}
	if len(hs) == 0 {
		r.queue.AddRateLimited(key, l)
	}
}

// authScope decides, with one confirming probe, whether the auth failure
// of a reconcile of key is about its account or about the token
// (accountScopes).
func (r *Runner) authScope(ctx context.Context, key string) authScope {
	ref, err := event.ParseScriptKey(key)
	if err != nil {
		return scopeToken
	}
	return r.scopes.scope(ctx, ref.AccountID, func(ctx context.Context) error {
		_, err := r.api.VerifyToken(ctx)
		return err
	})
}

// succeeded settles the held events a successful reconcile covered.
func (r *Runner) succeeded(ctx context.Context, key string, l lane, res Result, took time.Duration, log *zap.Logger) {
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
		r.settle(ctx, h, res.outcomeFor(h))
	}
	r.recordHistory(ctx, key, l, res, hs, log) // history.go
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
// account, namespace and name, its lane, and the newest held event.
func (r *Runner) scriptLogger(key, eventID string, l lane) *zap.Logger {
	fields := []zap.Field{zap.String("script_key", key), zap.Stringer("lane", l)}
	if ref, err := event.ParseScriptKey(key); err == nil {
		fields = append(fields, zap.String("account", ref.AccountID), zap.String("namespace", ref.Namespace), zap.String("script", ref.Script))
	}
	if eventID != "" {
		fields = append(fields, zap.String("event_id", eventID))
	}
	return r.log.With(fields...)
}

type loggerKey struct{}

// withLogger carries a reconcile's logger in its context.
func withLogger(ctx context.Context, log *zap.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// loggerFrom returns the logger carried by ctx, or def.
func loggerFrom(ctx context.Context, def *zap.Logger) *zap.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*zap.Logger); ok {
		return l
	}
	return def
}

// reconcileSafely is reconcile with a panic turned into an error: a bug
// met by one script's data must not kill the process with every other
// event held.
func (r *Runner) reconcileSafely(ctx context.Context, key string, minRevision uint64, log *zap.Logger) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.m.PanicsRecovered.Inc()
			log.Error("reconcile panicked", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			res, err = Result{}, fmt.Errorf("reconcile panicked: %v", p)
		}
	}()
	return r.rec.Reconcile(ctx, key, minRevision)
}
