package state

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/planner"
)

// ScriptBatch is the fold of the events of one script in a batch.
type ScriptBatch struct {
	Key    string
	Events []*event.Event
	// Outputs: per event its fold result, or why it was not folded; the
	// revision that holds the folds; or the error that stopped the fold.
	Results  []event.FoldResult
	Rejected []error
	Rev      uint64
	Err      error

	base    *event.DesiredState
	baseRev uint64
	state   *event.DesiredState
	data    []byte
	future  jetstream.PubAckFuture
}

// Commit folds every job with compare-and-set on its script's key: base
// states come from the cache or are read concurrently, the writes are
// pipelined (one round trip for the whole batch), and a job whose write
// lost a race with another replica is folded again from a fresh read.
//
// The acknowledgement of a pipelined write can be lost: the stream's
// leader dies with the write in flight while this process stays connected
// to another node, and a JetStream context without a publish-async
// timeout then never completes the future. A job still waiting after
// asyncAckWait is folded again from a fresh read too, which sees its
// write if it was applied (folding is idempotent).
func (s *Store) Commit(ctx context.Context, jobs []*ScriptBatch, limit int) {
	var misses []*ScriptBatch
	for _, j := range jobs {
		if st, rev, ok := s.cache.get(j.Key); ok {
			j.base, j.baseRev = st, rev
		} else {
			misses = append(misses, j)
		}
	}
	s.loadBases(ctx, misses)
	for _, j := range jobs {
		if j.Err != nil {
			continue
		}
		j.fold(limit)
		if j.data == nil {
			j.Rev = j.baseRev
			continue
		}
		if j.future, j.Err = s.publishDesiredAsync(j.Key, j.data, j.baseRev); j.Err != nil {
			j.future = nil
		}
	}
	ackCtx, cancel := context.WithTimeout(ctx, s.asyncAckWait)
	defer cancel()
	for _, j := range jobs {
		if j.future == nil {
			if j.Err != nil && !errors.Is(j.Err, ErrNotFound) {
				j.Err = s.foldSync(ctx, j, limit)
			}
			continue
		}
		select {
		case ack := <-j.future.Ok():
			j.Rev = ack.Sequence
			s.cache.put(j.Key, j.state, j.Rev)
		case <-j.future.Err():
			// Lost a race with another replica (or the write failed):
			// fold again from what is stored.
			s.cache.drop(j.Key)
			j.Err = s.foldSync(ctx, j, limit)
		case <-ackCtx.Done():
			if ctx.Err() != nil {
				j.Err = ctx.Err()
				continue
			}
			select {
			case ack := <-j.future.Ok():
				j.Rev = ack.Sequence
				s.cache.put(j.Key, j.state, j.Rev)
				continue
			default:
			}
			// No acknowledgement: fold again from what is stored.
			s.cache.drop(j.Key)
			j.Err = s.foldSync(ctx, j, limit)
		}
	}
}

// loadBases reads the desired states of jobs from KV, a few at a time.
func (s *Store) loadBases(ctx context.Context, jobs []*ScriptBatch) {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			j.base, j.baseRev, j.Err = s.LoadDesired(ctx, j.Key)
			if errors.Is(j.Err, ErrNotFound) {
				ref, err := event.ParseScriptKey(j.Key)
				if err != nil {
					ref = j.Events[0].Ref()
				}
				j.base, j.baseRev, j.Err = event.NewDesiredState(ref), 0, nil
			}
		}()
	}
	wg.Wait()
}

// foldSync folds job again from a fresh read, with blocking
// compare-and-set, until it wins.
func (s *Store) foldSync(ctx context.Context, j *ScriptBatch, limit int) error {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		j.Err = nil
		s.loadBases(ctx, []*ScriptBatch{j})
		if j.Err != nil {
			return j.Err
		}
		j.fold(limit)
		if j.data == nil {
			j.Rev = j.baseRev
			return nil
		}
		var rev uint64
		var err error
		octx, cancel := s.opContext(ctx)
		if j.baseRev == 0 {
			rev, err = s.desired.Create(octx, j.Key, j.data)
		} else {
			rev, err = s.desired.Update(octx, j.Key, j.data, j.baseRev)
		}
		cancel()
		if err == nil {
			j.Rev = rev
			s.cache.put(j.Key, j.state, rev)
			return nil
		}
		if !IsWrongLastSequence(err) {
			return fmt.Errorf("storing desired state of %s: %w", j.Key, err)
		}
	}
	return fmt.Errorf("storing desired state of %s: %d compare-and-set conflicts in a row", j.Key, maxCASAttempts)
}

// ErrStateTooLarge rejects an event whose fold would make the stored
// desired state larger than one NATS message may be.
var ErrStateTooLarge = errors.New("the desired state would be too large to store")

// fold folds the job's events onto its base state and encodes the result
// when it changed (j.data stays nil otherwise). The folded state must stay
// valid and storable: when the fold of every event together is not, each
// event is folded in turn and the ones that break it are rejected.
func (j *ScriptBatch) fold(limit int) {
	j.Results = make([]event.FoldResult, len(j.Events))
	j.Rejected = make([]error, len(j.Events))
	j.state, j.data = nil, nil
	st := j.base.Clone()
	changed := false
	for i, e := range j.Events {
		j.Results[i] = st.Fold(e)
		changed = changed || j.Results[i].Changed()
	}
	if !changed {
		return
	}
	if data, err := checkState(st, limit); err == nil {
		j.state, j.data = st, data
		return
	}
	// Slow path: find the events that break the state.
	st = j.base.Clone()
	var data []byte
	for i, e := range j.Events {
		cand := st.Clone()
		res := cand.Fold(e)
		if !res.Changed() {
			j.Results[i] = res
			continue
		}
		d, err := checkState(cand, limit)
		if err != nil {
			j.Results[i] = event.FoldResult{}
			j.Rejected[i] = err
			continue
		}
		j.Results[i], st, data = res, cand, d
	}
	if data != nil {
		j.state, j.data = st, data
	}
}

// checkState validates a folded desired state as a whole (what each event
// cannot show alone: the total size, renames across events) and encodes
// it, failing when the encoding is over limit bytes.
func checkState(st *event.DesiredState, limit int) ([]byte, error) {
	total, renames := 0, false
	for _, op := range st.Names {
		if op.Binding != nil {
			total += len(op.Binding.Raw())
			if op.Binding.Type() == wire.TypeInherit {
				if old, _ := op.Binding.String("old_name"); old != "" {
					renames = true
				}
			}
		}
	}
	if total > planner.MaxDesiredBytes {
		return nil, fmt.Errorf("%w: its bindings are %d bytes of JSON, over the limit of %d", ErrStateTooLarge, total, planner.MaxDesiredBytes)
	}
	if renames {
		d := st.Desired()
		d.Remove = nil // a tombstone never conflicts with an upsert of its own name
		if err := planner.Validate(d); err != nil {
			return nil, fmt.Errorf("the folded desired state is invalid: %w", err)
		}
	}
	data, err := EncodeState(st)
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%w: %d bytes, over the %d bytes one NATS message may carry (max_payload)", ErrStateTooLarge, len(data), limit)
	}
	return data, nil
}
