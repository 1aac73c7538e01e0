package backfill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// Options are the settings of one Execute.
type Options struct {
	// Source produces the items; its RunID names the run.
	Source         *Source
	SkipUnmodified bool
	// RetryFailed, on a resumed run, queues again the scripts whose result
	// failed (the run then waits for their new result).
	RetryFailed bool
	// View shows progress (nil: none); ETA turns API requests into time
	// under the budget (nil: no ETA).
	View View
	ETA  func(requests float64) time.Duration
	// Now is the clock (nil: time.Now); Log gets the run's log lines.
	Now func() time.Time
	Log *zap.Logger
}

// Execute runs a backfill on the pipeline behind res: it opens (or
// resumes) the run, follows its results, enqueues the scripts of the
// source that have none yet, and waits until every script of the source
// has one. Invalid input is counted as failed, first in the failures.
func Execute(ctx context.Context, res *state.Resources, o Options) (*Summary, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	start := o.Now()
	b, resumed, err := Open(ctx, res, state.BackfillRun{ID: o.Source.RunID, Source: o.Source.Describe, SkipUnmodified: o.SkipUnmodified, InputDigest: o.Source.Hash})
	if err != nil {
		return nil, err
	}
	tr := NewTracker(b.Record.ID, o.View, o.ETA, o.Now)
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	caughtUp := make(chan struct{})
	followed := make(chan error, 1)
	go func() {
		followed <- b.Follow(followCtx, func() { close(caughtUp) }, func(r state.BackfillResult) bool { tr.Result(r); return true })
	}()
	select {
	case <-caughtUp:
	case err := <-followed:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	invalid, err := enqueue(ctx, b, o.Source, tr, o.RetryFailed, o.Log)
	if err != nil {
		return nil, err
	}
	tr.Counted()
	if err := b.SetTotal(ctx, tr.Total()); err != nil {
		return nil, err
	}
	// A run cancelled from anywhere (backfill cancel) ends the wait.
	waitCtx, stopWatch := UntilCancelled(ctx, res, b.Record.ID)
	defer stopWatch()
	if err := tr.Wait(waitCtx, 0); err != nil {
		if cause := context.Cause(waitCtx); errors.Is(cause, ErrCancelled) {
			return nil, cause
		}
		return nil, fmt.Errorf("backfill run %s interrupted (start it again with --run-id %s to resume): %w", b.Record.ID, b.Record.ID, err)
	}
	stopFollow()
	if err := b.Finish(ctx); err != nil {
		o.Log.Warn("recording the end of the run", zap.Error(err))
	}
	sum := tr.Summary()
	sum.Resumed, sum.Invalid, sum.Seconds = resumed, len(invalid), o.Now().Sub(start).Seconds()
	sum.Scripts += len(invalid)
	sum.Failed += len(invalid)
	sum.Failures = append(invalid, sum.Failures...)
	return sum, nil
}

// enqueue streams the source's items into the run, skipping scripts that
// already have a result (unless retryFailed and it failed), and returns
// the invalid input.
func enqueue(ctx context.Context, b *Run, src *Source, tr *Tracker, retryFailed bool, log *zap.Logger) ([]Failure, error) {
	var batch []Item
	queued, already, done := 0, 0, 0
	flush := func() error {
		q, a, err := b.Enqueue(ctx, batch)
		queued, already = queued+q, already+a
		batch = batch[:0]
		return err
	}
	var invalid []Failure
	err := src.Each(ctx, func(it Item) error {
		key := event.ScriptKey(it.Ref)
		if retryFailed {
			it.Retry = tr.Retry(key)
		}
		if it.Retry == nil && tr.Member(key) {
			done++
			return nil
		}
		batch = append(batch, it)
		if len(batch) >= 1000 {
			return flush()
		}
		return nil
	}, func(where string, err error) {
		invalid = append(invalid, Failure{Script: where, Reason: "invalid_input", Error: err.Error()})
		log.Warn("invalid backfill input", zap.String("at", where), zap.Error(err))
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	log.Info("backfill enqueued", zap.String("run", b.Record.ID), zap.Int("scripts", tr.Total()),
		zap.Int("queued", queued), zap.Int("already_queued", already), zap.Int("already_done", done),
		zap.Int("invalid", len(invalid)))
	return invalid, nil
}
