package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/jobs/state"
)

// Steering runs from any machine on the NATS: List and StatusOf read a
// run's record, its queued items and its results; Cancel drops the
// queued items and records the run as cancelled.

// ErrRunNotFound is returned for a run id the runs bucket does not hold.
var ErrRunNotFound = errors.New("no such backfill run (see `reconciler backfill list`)")

// ErrCancelled is returned when enqueueing into, or resuming, a run that
// was cancelled.
var ErrCancelled = errors.New("backfill run was cancelled")

// InputMismatchError refuses a run id reused with different input: the
// events of a run carry its id, so the second input would be taken for the
// first one's, already applied.
type InputMismatchError struct {
	ID       string
	Stored   state.BackfillRun
	Proposed state.BackfillRun
}

func (e *InputMismatchError) Error() string {
	return fmt.Sprintf("backfill run %s was started on %s with different input: it has %s (input digest %s), this one is %s (input digest %s); "+
		"give the same input to resume it, or another --run-id for a new run",
		e.ID, e.Stored.CreatedAt.Format(time.RFC3339), e.Stored.Source, short(e.Stored.InputDigest), e.Proposed.Source, short(e.Proposed.InputDigest))
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	if digest == "" {
		return "unknown"
	}
	return digest
}

// checkSameInput compares a stored run with the one proposed for its id.
func checkSameInput(stored, proposed state.BackfillRun) error {
	differ := false
	switch {
	case stored.InputDigest != "" && proposed.InputDigest != "":
		differ = stored.InputDigest != proposed.InputDigest
	case proposed.Source != "" && stored.Source != "":
		differ = stored.Source != proposed.Source
	}
	if differ {
		return &InputMismatchError{ID: stored.ID, Stored: stored, Proposed: proposed}
	}
	if stored.CancelledAt != nil {
		return fmt.Errorf("%w on %s: its queued items were dropped; start a new run with another --run-id", ErrCancelled,
			stored.CancelledAt.Format(time.RFC3339))
	}
	return nil
}

// LoadRun reads run id from the runs bucket.
func LoadRun(ctx context.Context, res *state.Resources, id string) (*Run, uint64, error) {
	if err := state.ValidateRunID(id); err != nil {
		return nil, 0, err
	}
	e, err := res.Runs.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("backfill run %s: %w", id, ErrRunNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("backfill run %s: %w", id, err)
	}
	var rec state.BackfillRun
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, 0, fmt.Errorf("backfill run %s: stored record is corrupt: %w", id, err)
	}
	return &Run{res: res, Record: rec}, e.Revision(), nil
}

// RunStatus is a run's progress as any machine on the NATS sees it.
type RunStatus struct {
	Record state.BackfillRun `json:"run"`
	// State is StateRunning, StateFinished or StateCancelled.
	State string `json:"state"`
	Totals
	// Queued counts the run's work items still in the backfill stream
	// (taken by a runner or not).
	Queued uint64 `json:"queued"`
	// Remaining is Total minus the scripts with a result (0 while the
	// total is not known yet).
	Remaining int `json:"remaining"`
	// Rate is scripts with a result per second since the run was created,
	// and ETA the time the remaining ones take at that rate (0: unknown).
	Rate     float64                `json:"rate_per_second"`
	ETA      time.Duration          `json:"eta_ns"`
	Failures []state.BackfillResult `json:"failures,omitempty"`
}

// States of a run.
const (
	StateRunning   = "running"
	StateFinished  = "finished"
	StateCancelled = "cancelled"
)

// Results returns the latest result of every script of the run, by
// script key (one per script: the results stream keeps the last).
func (b *Run) Results(ctx context.Context) (map[string]state.BackfillResult, error) {
	out := map[string]state.BackfillResult{}
	filter := b.res.Names.WithDefaults().ResultsPrefix + "." + b.Record.ID + ".>"
	info, err := b.res.Results.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("results of run %s: %w", b.Record.ID, err)
	}
	want := len(info.State.Subjects)
	if want == 0 {
		return out, nil
	}
	cons, err := b.res.Results.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter},
		DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, fmt.Errorf("results of run %s: %w", b.Record.ID, err)
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("results of run %s: %w", b.Record.ID, err)
		}
		got, last := 0, false
		for m := range batch.Messages() {
			got++
			if meta, err := m.Metadata(); err == nil && meta.NumPending == 0 {
				last = true
			}
			var r state.BackfillResult
			if json.Unmarshal(m.Data(), &r) == nil && r.Script != "" {
				out[r.Script] = r
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("results of run %s: %w", b.Record.ID, err)
		}
		if got == 0 || last {
			return out, nil
		}
	}
}

// Status returns the run's progress at now: its results by outcome, the
// items still queued, the failures and an ETA from the rate so far.
func (b *Run) Status(ctx context.Context, now time.Time) (*RunStatus, error) {
	results, err := b.Results(ctx)
	if err != nil {
		return nil, err
	}
	st := &RunStatus{Record: b.Record, State: StateRunning}
	for _, r := range results {
		st.Totals.Add(r, nil)
		if r.Outcome == state.ResultFailed {
			st.Failures = append(st.Failures, r)
		}
	}
	sort.Slice(st.Failures, func(i, j int) bool { return st.Failures[i].Script < st.Failures[j].Script })
	info, err := b.res.Backfill.Info(ctx, jetstream.WithSubjectFilter(b.res.Names.WithDefaults().BackfillPrefix+"."+b.Record.ID+".>"))
	if err != nil {
		return nil, fmt.Errorf("queued items of run %s: %w", b.Record.ID, err)
	}
	st.Queued = info.State.Msgs
	switch {
	case b.Record.CancelledAt != nil:
		st.State = StateCancelled
	case b.Record.FinishedAt != nil || b.Record.Total > 0 && st.Scripts >= b.Record.Total:
		st.State = StateFinished
	}
	if b.Record.Total > 0 {
		st.Remaining = max(b.Record.Total-st.Scripts, 0)
	}
	if elapsed := now.Sub(b.Record.CreatedAt); elapsed > 0 && st.Scripts > 0 {
		st.Rate = float64(st.Scripts) / elapsed.Seconds()
		if st.State == StateRunning && st.Remaining > 0 {
			st.ETA = time.Duration(float64(st.Remaining) / st.Rate * float64(time.Second))
		}
	}
	return st, nil
}

// List returns the status of every run at now, newest first.
func List(ctx context.Context, res *state.Resources, now time.Time) ([]*RunStatus, error) {
	lister, err := res.Runs.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing backfill runs: %w", err)
	}
	var out []*RunStatus
	for id := range lister.Keys() {
		b, _, err := LoadRun(ctx, res, id)
		if err != nil {
			if errors.Is(err, ErrRunNotFound) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		st, err := b.Status(ctx, now)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Record.CreatedAt.Equal(out[j].Record.CreatedAt) {
			return out[i].Record.CreatedAt.After(out[j].Record.CreatedAt)
		}
		return out[i].Record.ID < out[j].Record.ID
	})
	return out, nil
}

// Cancel records run id as cancelled at now and drops its queued work
// items; items a runner holds already finish (their results are
// recorded), and a process still enqueueing the run stops at its next
// batch (ErrCancelled). It returns the number of items dropped. Cancelling
// a cancelled run drops what was queued since and keeps the first time.
func Cancel(ctx context.Context, res *state.Resources, id string, now time.Time) (uint64, error) {
	for attempt := 0; ; attempt++ {
		b, rev, err := LoadRun(ctx, res, id)
		if err != nil {
			return 0, err
		}
		if b.Record.CancelledAt == nil {
			at := now.UTC()
			b.Record.CancelledAt, b.Record.UpdatedAt = &at, at
			data, _ := json.Marshal(b.Record)
			if _, err := res.Runs.Update(ctx, id, data, rev); err != nil {
				if state.IsWrongLastSequence(err) && attempt < 16 {
					continue // the run's record changed meanwhile
				}
				return 0, fmt.Errorf("cancelling backfill run %s: %w", id, err)
			}
		}
		subject := res.Names.WithDefaults().BackfillPrefix + "." + id + ".>"
		info, err := res.Backfill.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			return 0, fmt.Errorf("cancelling backfill run %s: %w", id, err)
		}
		if info.State.Msgs == 0 {
			return 0, nil
		}
		if err := res.Backfill.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return 0, fmt.Errorf("cancelling backfill run %s: dropping its queued items: %w", id, err)
		}
		return info.State.Msgs, nil
	}
}

// checkNotCancelled returns ErrCancelled when the run's stored record says
// it was cancelled (by `backfill cancel` on any machine).
func (b *Run) checkNotCancelled(ctx context.Context) error {
	cur, _, err := LoadRun(ctx, b.res, b.Record.ID)
	if err != nil {
		if errors.Is(err, ErrRunNotFound) {
			return nil // a run record is only deleted by hand
		}
		return err
	}
	if cur.Record.CancelledAt != nil {
		b.Record.CancelledAt = cur.Record.CancelledAt
		return fmt.Errorf("backfill run %s: %w on %s", b.Record.ID, ErrCancelled, cur.Record.CancelledAt.Format(time.RFC3339))
	}
	return nil
}

// FailedScripts returns the scripts whose latest result failed, for a
// resumed run that retries them (queue each again with Item.Retry set).
func (b *Run) FailedScripts(ctx context.Context) (map[string]state.BackfillResult, error) {
	results, err := b.Results(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]state.BackfillResult{}
	for k, r := range results {
		if r.Outcome == state.ResultFailed {
			out[k] = r
		}
	}
	return out, nil
}
