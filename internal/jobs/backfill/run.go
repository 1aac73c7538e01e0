package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// Item is one script of a run: its event (docs/events.md JSON) and,
// when it came from a namespace listing, the listed modified_on.
type Item struct {
	Ref        cfapi.ScriptRef
	Event      []byte
	ModifiedOn string
	// Retry, when set, is the failed result this item retries: its
	// message id differs from the first item's (the stream's duplicate
	// window would drop it) and is the same for every process that
	// retries that result.
	Retry *state.BackfillResult
}

// Run enqueues the items of one run and follows their results. Items
// go to the backfill stream (one per script, refused while one is already
// queued), where the runners of the pipeline take them on the backfill
// lane; results come back per script in the results stream.
type Run struct {
	res    *state.Resources
	Record state.BackfillRun
}

// Open loads run from the runs bucket, or stores it there when it
// is new. A run that exists keeps its creation time and settings (resume);
// it is refused with an *InputMismatchError when its input differs (see
// state.BackfillRun.InputDigest), and with ErrCancelled when it was
// cancelled.
func Open(ctx context.Context, res *state.Resources, run state.BackfillRun) (*Run, bool, error) {
	if err := state.ValidateRunID(run.ID); err != nil {
		return nil, false, err
	}
	if e, err := res.Runs.Get(ctx, run.ID); err == nil {
		var old state.BackfillRun
		if err := json.Unmarshal(e.Value(), &old); err != nil {
			return nil, false, fmt.Errorf("backfill run %s: stored record is corrupt: %w", run.ID, err)
		}
		if err := checkSameInput(old, run); err != nil { // steer.go
			return nil, true, err
		}
		return &Run{res: res, Record: old}, true, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, fmt.Errorf("backfill run %s: %w", run.ID, err)
	}
	run.CreatedAt = time.Now().UTC()
	run.UpdatedAt = run.CreatedAt
	data, _ := json.Marshal(run)
	if _, err := res.Runs.Create(ctx, run.ID, data); err != nil {
		if state.IsWrongLastSequence(err) {
			return Open(ctx, res, run) // created meanwhile
		}
		return nil, false, fmt.Errorf("backfill run %s: %w", run.ID, err)
	}
	return &Run{res: res, Record: run}, false, nil
}

// SetTotal records the number of scripts of the run once every item is
// enqueued.
func (b *Run) SetTotal(ctx context.Context, total int) error {
	return b.update(ctx, func(r *state.BackfillRun) { r.Total = total })
}

// Finish records that every script of the run has a result.
func (b *Run) Finish(ctx context.Context) error {
	return b.update(ctx, func(r *state.BackfillRun) {
		now := time.Now().UTC()
		r.FinishedAt = &now
	})
}

// update changes the stored record with compare-and-set, so that what
// another machine recorded meanwhile (a cancel) is kept.
func (b *Run) update(ctx context.Context, edit func(*state.BackfillRun)) error {
	for attempt := 0; ; attempt++ {
		cur, rev, err := LoadRun(ctx, b.res, b.Record.ID)
		if err != nil {
			return err
		}
		rec := cur.Record
		edit(&rec)
		rec.UpdatedAt = time.Now().UTC()
		data, _ := json.Marshal(rec)
		_, err = b.res.Runs.Update(ctx, rec.ID, data, rev)
		if err == nil {
			b.Record = rec
			return nil
		}
		if !state.IsWrongLastSequence(err) || attempt >= 16 {
			return fmt.Errorf("backfill run %s: %w", rec.ID, err)
		}
	}
}

// Enqueue publishes items as work of the run, pipelined. An item whose
// script is already queued for this run is refused by the stream and
// counted as already queued, so enqueueing again (a resume) never queues a
// script twice.
func (b *Run) Enqueue(ctx context.Context, items []Item) (queued, already int, err error) {
	type pending struct {
		f   jetstream.PubAckFuture
		key string
	}
	var futures []pending
	wait := func() error {
		for _, p := range futures {
			select {
			case <-p.f.Ok():
				queued++
			case err := <-p.f.Err():
				if isAlreadyQueued(err) {
					already++
					continue
				}
				return fmt.Errorf("enqueueing %s: %w", p.key, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	names := b.res.Names
	if err := b.checkNotCancelled(ctx); err != nil {
		return 0, 0, err
	}
	for _, it := range items {
		key := event.ScriptKey(it.Ref)
		m := nats.NewMsg(names.BackfillPrefix + "." + b.Record.ID + "." + key)
		m.Data = it.Event
		m.Header.Set(state.HeaderRun, b.Record.ID)
		msgID := "backfill:" + b.Record.ID + ":" + key
		if it.Retry != nil {
			msgID += ":retry:" + it.Retry.At.UTC().Format(time.RFC3339Nano)
		}
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		if it.ModifiedOn != "" {
			m.Header.Set(state.HeaderListedModified, it.ModifiedOn)
		}
		if b.Record.SkipUnmodified {
			m.Header.Set(state.HeaderSkipUnmodified, "1")
		}
		f, err := b.res.JS.PublishMsgAsync(m)
		if err != nil {
			return queued, already, fmt.Errorf("enqueueing %s: %w", key, err)
		}
		futures = append(futures, pending{f: f, key: key})
		if len(futures) >= 512 {
			if err := wait(); err != nil {
				return queued, already, err
			}
		}
	}
	return queued, already, wait()
}

// isAlreadyQueued reports the stream's refusal of a second item for one
// script and run (maximum messages per subject, discard new).
func isAlreadyQueued(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return strings.Contains(strings.ToLower(apiErr.Description), "maximum messages per subject")
	}
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "maximum messages per subject")
}

// Follow calls fn with every result of the run stored so far, then with
// each new one as it arrives, until ctx ends or fn returns false. A
// script's result may come more than once (the last one counts). caughtUp
// is called once, after the results stored before Follow began.
func (b *Run) Follow(ctx context.Context, caughtUp func(), fn func(state.BackfillResult) bool) error {
	cons, err := b.res.Results.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.res.Names.ResultsPrefix + "." + b.Record.ID + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("following results of run %s: %w", b.Record.ID, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	backlog := info.NumPending
	if backlog == 0 && caughtUp != nil {
		caughtUp()
		caughtUp = nil
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	defer it.Stop()
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		var res state.BackfillResult
		if err := json.Unmarshal(m.Data(), &res); err != nil {
			continue
		}
		if !fn(res) {
			return nil
		}
		if caughtUp != nil {
			if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
				caughtUp()
				caughtUp = nil
			}
		}
	}
}

// Totals counts a run's results by outcome.
type Totals struct {
	Scripts   int `json:"scripts"`
	Changed   int `json:"changed"`
	Unchanged int `json:"unchanged"`
	Failed    int `json:"failed"`
}

// Add counts one script's result, replacing an earlier result of the same
// script (prev, when it had one).
func (t *Totals) Add(res state.BackfillResult, prev *state.BackfillResult) {
	if prev != nil {
		t.count(prev.Outcome, -1)
	} else {
		t.Scripts++
	}
	t.count(res.Outcome, 1)
}

func (t *Totals) count(outcome string, d int) {
	switch outcome {
	case state.ResultChanged:
		t.Changed += d
	case state.ResultUnchanged:
		t.Unchanged += d
	case state.ResultFailed:
		t.Failed += d
	}
}
