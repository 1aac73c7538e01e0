package jobs

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/metrics"
	"go.uber.org/zap"
)

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
	var term *TerminalError
	switch {
	case err == nil && res.Requeue:
		r.m.ReconcileTotal.WithLabelValues(res.metricResult()).Inc()
		if res.Held != "" {
			r.m.ScriptsHeld.WithLabelValues(res.Held).Inc()
		}
		r.queue.AddAfter(key, l, res.RequeueAfter)
	case err == nil:
		r.succeeded(ctx, key, res, took, log)
	case isAuthFailure(err) && ctx.Err() == nil:
		// The credentials are rejected: no event is to blame. Stop taking
		// work (readiness fails), keep the events, try again later.
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
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
		hs := r.waiting.take(key, minRevision)
		for _, h := range hs {
			r.settle(ctx, h, retryOutcome(err))
		}
		if len(hs) == 0 {
			// Nothing to redeliver (a resync, a recovery, or events that
			// another replica holds): retry from the queue with backoff.
			r.queue.AddRateLimited(key, l)
		}
	}
}

// succeeded settles the held events a successful reconcile covered.
func (r *Runner) succeeded(ctx context.Context, key string, res Result, took time.Duration, log *zap.Logger) {
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
	level := zap.DebugLevel // a no-op is routine; a write is news
	if res.Wrote {
		level = zap.InfoLevel
	}
	if ce := log.Check(level, "reconciled"); ce != nil {
		ce.Write(zap.String("result", result), zap.String("strategy", string(res.Strategy)),
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
