package jobs

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
)

// BackfillRun is what a backfill run covers, stored in the runs bucket
// under its id so that a resumed run knows itself.
type BackfillRun struct {
	ID             string    `json:"id"`
	Source         string    `json:"source"`
	Total          int       `json:"total"` // scripts, once every item is enqueued (0 before)
	SkipUnmodified bool      `json:"skip_unmodified,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
	// FinishedAt is set when every script of the run has a result.
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// BackfillItem is one script of a run: its event (EVENTS.md JSON) and,
// when it came from a namespace listing, the listed modified_on.
type BackfillItem struct {
	Ref        cfapi.ScriptRef
	Event      []byte
	ModifiedOn string
}

// Backfill enqueues the items of one run and follows their results. Items
// go to the backfill stream (one per script, refused while one is already
// queued), where the runners of the pipeline take them on the backfill
// lane; results come back per script in the results stream.
type Backfill struct {
	res *Resources
	Run BackfillRun
}

// OpenBackfill loads run from the runs bucket, or stores it there when it
// is new. A run that exists keeps its creation time and settings (resume).
func OpenBackfill(ctx context.Context, res *Resources, run BackfillRun) (*Backfill, bool, error) {
	if err := ValidateRunID(run.ID); err != nil {
		return nil, false, err
	}
	if e, err := res.Runs.Get(ctx, run.ID); err == nil {
		var old BackfillRun
		if err := json.Unmarshal(e.Value(), &old); err != nil {
			return nil, false, fmt.Errorf("backfill run %s: stored record is corrupt: %w", run.ID, err)
		}
		return &Backfill{res: res, Run: old}, true, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, fmt.Errorf("backfill run %s: %w", run.ID, err)
	}
	run.CreatedAt = time.Now().UTC()
	run.UpdatedAt = run.CreatedAt
	data, _ := json.Marshal(run)
	if _, err := res.Runs.Create(ctx, run.ID, data); err != nil {
		if isWrongLastSequence(err) {
			return OpenBackfill(ctx, res, run) // created meanwhile
		}
		return nil, false, fmt.Errorf("backfill run %s: %w", run.ID, err)
	}
	return &Backfill{res: res, Run: run}, false, nil
}

// SetTotal records the number of scripts of the run once every item is
// enqueued.
func (b *Backfill) SetTotal(ctx context.Context, total int) error {
	b.Run.Total = total
	b.Run.UpdatedAt = time.Now().UTC()
	data, _ := json.Marshal(b.Run)
	_, err := b.res.Runs.Put(ctx, b.Run.ID, data)
	return err
}

// Finish records that every script of the run has a result.
func (b *Backfill) Finish(ctx context.Context) error {
	now := time.Now().UTC()
	b.Run.FinishedAt, b.Run.UpdatedAt = &now, now
	data, _ := json.Marshal(b.Run)
	_, err := b.res.Runs.Put(ctx, b.Run.ID, data)
	return err
}

// ActiveRuns counts the runs that are not finished and still have work
// items waiting in the backfill stream.
func ActiveRuns(ctx context.Context, res *Resources) (int, error) {
	lister, err := res.Runs.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for id := range lister.Keys() {
		e, err := res.Runs.Get(ctx, id)
		if err != nil {
			continue
		}
		var run BackfillRun
		if json.Unmarshal(e.Value(), &run) != nil || run.FinishedAt != nil {
			continue
		}
		info, err := res.Backfill.Info(ctx, jetstream.WithSubjectFilter(res.names.BackfillPrefix+"."+id+".>"))
		if err == nil && info.State.Msgs > 0 {
			n++
		}
	}
	return n, nil
}

// Enqueue publishes items as work of the run, pipelined. An item whose
// script is already queued for this run is refused by the stream and
// counted as already queued, so enqueueing again (a resume) never queues a
// script twice.
func (b *Backfill) Enqueue(ctx context.Context, items []BackfillItem) (queued, already int, err error) {
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
	names := b.res.names
	for _, it := range items {
		key := ScriptKey(it.Ref)
		m := nats.NewMsg(names.BackfillPrefix + "." + b.Run.ID + "." + key)
		m.Data = it.Event
		m.Header.Set(HeaderRun, b.Run.ID)
		m.Header.Set(jetstream.MsgIDHeader, "backfill:"+b.Run.ID+":"+key)
		if it.ModifiedOn != "" {
			m.Header.Set(HeaderListedModified, it.ModifiedOn)
		}
		if b.Run.SkipUnmodified {
			m.Header.Set(HeaderSkipUnmodified, "1")
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
func (b *Backfill) Follow(ctx context.Context, caughtUp func(), fn func(BackfillResult) bool) error {
	cons, err := b.res.Results.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.res.names.ResultsPrefix + "." + b.Run.ID + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("following results of run %s: %w", b.Run.ID, err)
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
		var res BackfillResult
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

// BackfillTotals counts a run's results by outcome.
type BackfillTotals struct {
	Scripts   int `json:"scripts"`
	Changed   int `json:"changed"`
	Unchanged int `json:"unchanged"`
	Failed    int `json:"failed"`
}

// Add counts one script's result, replacing an earlier result of the same
// script (prev, when it had one).
func (t *BackfillTotals) Add(res BackfillResult, prev *BackfillResult) {
	if prev != nil {
		t.count(prev.Outcome, -1)
	} else {
		t.Scripts++
	}
	t.count(res.Outcome, 1)
}

func (t *BackfillTotals) count(outcome string, d int) {
	switch outcome {
	case resultChanged:
		t.Changed += d
	case resultUnchanged:
		t.Unchanged += d
	case resultFailed:
		t.Failed += d
	}
}
