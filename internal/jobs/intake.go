package jobs

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/planner"
)

// Folding in large batches is what makes a storm cheap: the events of
// one script in a batch cost one compare-and-set. A batch takes what pull
// has delivered within foldWindow of its first message, up to
// maxFoldBatch messages; a quiet system folds each event at once.
const (
	foldWindow   = 20 * time.Millisecond
	maxFoldBatch = 8192
)

// fold is the live lane's fold stage: it takes what pull has delivered in
// batches and folds each batch. Folding needs no API call, so it never
// waits on reconciles. When ctx ends it hands back what it has not
// folded; a batch it started is finished with workCtx.
func (r *Runner) fold(ctx, workCtx context.Context, in <-chan jetstream.Msg) {
	batch := make([]message, 0, maxFoldBatch)
	timer := time.NewTimer(foldWindow)
	defer timer.Stop()
	for m := range in {
		batch = append(batch[:0], m)
		timer.Reset(foldWindow)
	gather:
		for len(batch) < maxFoldBatch {
			select {
			case m2, ok := <-in:
				if !ok {
					break gather
				}
				batch = append(batch, m2)
			default:
				// Nothing waiting: fold now unless more is on its way
				// (a backlog), then wait for it within the window.
				if !r.backlog.Load() {
					break gather
				}
				select {
				case m2, ok := <-in:
					if !ok {
						break gather
					}
					batch = append(batch, m2)
				case <-timer.C:
					break gather
				}
			}
		}
		if ctx.Err() != nil {
			for _, m := range batch {
				_ = m.NakWithDelay(time.Second)
			}
			continue
		}
		r.foldBatch(workCtx, batch, laneLive)
	}
}

// received is one delivered message on its way to being held.
type received struct {
	msg   message
	meta  *jetstream.MsgMetadata
	event *Event
	item  *backfillItem // backfill work only
}

// foldBatch decodes a batch of messages, dead-letters bad input, folds the
// events of each script with one compare-and-set, and holds the events
// whose fold may need applying (stale and already-applied events are
// acknowledged at once).
func (r *Runner) foldBatch(ctx context.Context, batch []message, l lane) {
	decoded := r.decodeAll(ctx, batch, l)
	if l == laneLive {
		// The last message says whether more are waiting to be folded.
		if meta, err := batch[len(batch)-1].Metadata(); err == nil {
			r.backlog.Store(meta.NumPending > 0)
		}
	}
	groups := map[string][]received{}
	var order []string
	for _, rc := range decoded {
		if rc.event == nil {
			continue
		}
		key := rc.event.Key()
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], rc)
	}
	if len(order) == 0 {
		return
	}
	jobs := make([]*foldJob, len(order))
	for i, key := range order {
		job := &foldJob{key: key}
		for _, rc := range groups[key] {
			job.events = append(job.events, rc.event)
		}
		jobs[i] = job
	}
	r.st.foldAll(ctx, jobs, r.maxState)
	for _, job := range jobs {
		r.holdFolded(ctx, job, groups[job.key], l)
	}
}

// decodeAll decodes a batch, on every core when it is large (decoding is
// most of the fold stage's CPU), and returns the received messages in
// batch order; bad input is settled and has no event.
func (r *Runner) decodeAll(ctx context.Context, batch []message, l lane) []received {
	out := make([]received, len(batch))
	workers := min(runtime.GOMAXPROCS(0), len(batch)/64+1)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(batch); i += workers {
				if rc, ok := r.decode(ctx, batch[i], l); ok {
					out[i] = rc
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// decode reads one message's metadata and event. Bad input is
// dead-lettered here and ok is false.
func (r *Runner) decode(ctx context.Context, m message, l lane) (rc received, ok bool) {
	r.m.EventsReceived.Inc()
	meta, err := m.Metadata()
	if err != nil {
		r.log.Error("event without JetStream metadata", zap.Error(err))
		_ = m.TermWithReason("no metadata")
		return rc, false
	}
	if meta.NumDelivered > 1 {
		r.m.EventRedeliveries.Inc()
	}
	rc = received{msg: m, meta: meta}
	defer func() {
		if p := recover(); p != nil {
			r.m.PanicsRecovered.Inc()
			r.log.Error("panic decoding an event", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			r.settle(ctx, r.newHeld(rc, l, 0), deadLetterOutcome(ReasonPanic, fmt.Errorf("decoding the event panicked: %v", p)))
			ok = false
		}
	}()
	if l == laneBackfill {
		rc.item, rc.event, err = decodeBackfillItem(m, r.cfg.BackfillPrefix)
	} else {
		rc.event, err = DecodeEvent(m.Data(), m.Subject(), r.cfg.SubjectPrefix)
	}
	if err != nil {
		reason := ReasonInvalidJSON
		var ie *InvalidEventError
		if errors.As(err, &ie) {
			reason = ie.Reason
		}
		r.settle(ctx, r.newHeld(rc, l, 0), deadLetterOutcome(reason, err))
		return rc, false
	}
	return rc, true
}

// newHeld returns the held form of a received message.
func (r *Runner) newHeld(rc received, l lane, foldRev uint64) *heldEvent {
	h := &heldEvent{ack: compactAcker(r.conn(), rc.msg), lane: l, foldRev: foldRev, backfill: rc.item}
	if rc.meta != nil {
		h.stream, h.streamSeq, h.delivered = rc.meta.Stream, rc.meta.Sequence.Stream, rc.meta.NumDelivered
	}
	if rc.event != nil {
		h.id = rc.event.ID
		if rc.event.OccurredAt != nil {
			h.occurredAt = *rc.event.OccurredAt
		}
	} else {
		h.body, h.subject = rc.msg.Data(), rc.msg.Subject()
	}
	return h
}

// holdFolded settles or holds the events of one folded script.
func (r *Runner) holdFolded(ctx context.Context, job *foldJob, group []received, l lane) {
	if job.err != nil {
		r.log.Error("folding events", zap.String("script", job.key), zap.Error(job.err))
		for _, rc := range group {
			r.settle(ctx, r.newHeld(rc, l, 0), retryOutcome(fmt.Errorf("could not store the desired state: %w", job.err)))
		}
		return
	}
	r.m.EventsFolded.Add(float64(len(group)))
	var applied *AppliedRecord // read once, for duplicates only
	var hold []*heldEvent
	for i, rc := range group {
		res := job.results[i]
		if res.Stale > 0 {
			r.m.StaleOperations.Add(float64(res.Stale))
		}
		h := r.newHeld(rc, l, job.rev)
		switch {
		case job.rejected[i] != nil:
			reason := ReasonInvalidBinding
			if errors.Is(job.rejected[i], errStateTooLarge) {
				reason = ReasonTooLarge
			}
			r.settle(ctx, h, deadLetterOutcome(reason, job.rejected[i]))
		case res.AllStale():
			// Nothing of it can apply: newer operations already hold every
			// name it touches.
			r.settle(ctx, h, ackOutcome(outcomeStale, false))
		case !res.Changed() && (l == laneLive || rc.item.skipUnmodified && rc.item.modifiedOn != ""):
			// Folded before (a redelivery, a duplicate, or a backfill of
			// what is desired already): if a reconcile has recorded a
			// write planned from this revision or a newer one, the event is
			// applied already. A backfill item also needs the listing to
			// show the script untouched since a read found it converged
			// (--skip-unmodified): then it costs no read at all.
			if applied == nil {
				if applied, _, _ = r.st.loadApplied(ctx, job.key); applied == nil {
					applied = &AppliedRecord{}
				}
			}
			if applied.DesiredRevision >= job.rev && (l == laneLive || applied.ModifiedOn == rc.item.modifiedOn) {
				r.settle(ctx, h, ackOutcome(outcomeNoop, false))
				continue
			}
			hold = append(hold, h)
		default:
			hold = append(hold, h)
		}
	}
	if len(hold) == 0 {
		return
	}
	r.held.add(job.key, hold...)
	if l == laneLive {
		r.queue.Debounce(job.key, laneLive)
	} else {
		if m := hold[0].backfill.modifiedOn; m != "" {
			r.held.setModifiedOn(job.key, m)
		}
		r.queue.Add(job.key, laneBackfill)
	}
}

// foldJob is the fold of the events of one script in a batch.
type foldJob struct {
	key    string
	events []*Event
	// Outputs: per event its fold result, or why it was not folded; the
	// revision that holds the folds; or the error that stopped the fold.
	results  []FoldResult
	rejected []error
	rev      uint64
	err      error

	base    *DesiredState
	baseRev uint64
	state   *DesiredState
	data    []byte
	future  jetstream.PubAckFuture
}

// foldAll folds every job with compare-and-set on its script's key: base
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
func (s *stores) foldAll(ctx context.Context, jobs []*foldJob, limit int) {
	var misses []*foldJob
	for _, j := range jobs {
		if st, rev, ok := s.cache.get(j.key); ok {
			j.base, j.baseRev = st, rev
		} else {
			misses = append(misses, j)
		}
	}
	s.loadBases(ctx, misses)
	for _, j := range jobs {
		if j.err != nil {
			continue
		}
		j.fold(limit)
		if j.data == nil {
			j.rev = j.baseRev
			continue
		}
		if j.future, j.err = s.publishDesiredAsync(j.key, j.data, j.baseRev); j.err != nil {
			j.future = nil
		}
	}
	ackCtx, cancel := context.WithTimeout(ctx, s.asyncAckWait)
	defer cancel()
	for _, j := range jobs {
		if j.future == nil {
			if j.err != nil && !errors.Is(j.err, errNotFound) {
				j.err = s.foldSync(ctx, j, limit)
			}
			continue
		}
		select {
		case ack := <-j.future.Ok():
			j.rev = ack.Sequence
			s.cache.put(j.key, j.state, j.rev)
		case <-j.future.Err():
			// Lost a race with another replica (or the write failed):
			// fold again from what is stored.
			s.cache.drop(j.key)
			j.err = s.foldSync(ctx, j, limit)
		case <-ackCtx.Done():
			if ctx.Err() != nil {
				j.err = ctx.Err()
				continue
			}
			select {
			case ack := <-j.future.Ok():
				j.rev = ack.Sequence
				s.cache.put(j.key, j.state, j.rev)
				continue
			default:
			}
			// No acknowledgement: fold again from what is stored.
			s.cache.drop(j.key)
			j.err = s.foldSync(ctx, j, limit)
		}
	}
}

// loadBases reads the desired states of jobs from KV, a few at a time.
func (s *stores) loadBases(ctx context.Context, jobs []*foldJob) {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			j.base, j.baseRev, j.err = s.loadDesired(ctx, j.key)
			if errors.Is(j.err, errNotFound) {
				ref, err := ParseScriptKey(j.key)
				if err != nil {
					ref = j.events[0].Ref()
				}
				j.base, j.baseRev, j.err = NewDesiredState(ref), 0, nil
			}
		}()
	}
	wg.Wait()
}

// foldSync folds job again from a fresh read, with blocking
// compare-and-set, until it wins.
func (s *stores) foldSync(ctx context.Context, j *foldJob, limit int) error {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		j.err = nil
		s.loadBases(ctx, []*foldJob{j})
		if j.err != nil {
			return j.err
		}
		j.fold(limit)
		if j.data == nil {
			j.rev = j.baseRev
			return nil
		}
		var rev uint64
		var err error
		octx, cancel := s.opContext(ctx)
		if j.baseRev == 0 {
			rev, err = s.desired.Create(octx, j.key, j.data)
		} else {
			rev, err = s.desired.Update(octx, j.key, j.data, j.baseRev)
		}
		cancel()
		if err == nil {
			j.rev = rev
			s.cache.put(j.key, j.state, rev)
			return nil
		}
		if !isWrongLastSequence(err) {
			return fmt.Errorf("storing desired state of %s: %w", j.key, err)
		}
	}
	return fmt.Errorf("storing desired state of %s: %d compare-and-set conflicts in a row", j.key, maxCASAttempts)
}

// errStateTooLarge rejects an event whose fold would make the stored
// desired state larger than one NATS message may be.
var errStateTooLarge = errors.New("the desired state would be too large to store")

// fold folds the job's events onto its base state and encodes the result
// when it changed (j.data stays nil otherwise). The folded state must stay
// valid and storable: when the fold of every event together is not, each
// event is folded in turn and the ones that break it are rejected.
func (j *foldJob) fold(limit int) {
	j.results = make([]FoldResult, len(j.events))
	j.rejected = make([]error, len(j.events))
	j.state, j.data = nil, nil
	st := j.base.Clone()
	changed := false
	for i, e := range j.events {
		j.results[i] = st.Fold(e)
		changed = changed || j.results[i].Changed()
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
	for i, e := range j.events {
		cand := st.Clone()
		res := cand.Fold(e)
		if !res.Changed() {
			j.results[i] = res
			continue
		}
		d, err := checkState(cand, limit)
		if err != nil {
			j.results[i] = FoldResult{}
			j.rejected[i] = err
			continue
		}
		j.results[i], st, data = res, cand, d
	}
	if data != nil {
		j.state, j.data = st, data
	}
}

// checkState validates a folded desired state as a whole (what each event
// cannot show alone: the total size, renames across events) and encodes
// it, failing when the encoding is over limit bytes.
func checkState(st *DesiredState, limit int) ([]byte, error) {
	total, renames := 0, false
	for _, op := range st.Names {
		if op.Binding != nil {
			total += len(op.Binding.Raw())
			if op.Binding.Type() == cfapi.TypeInherit {
				if old, _ := op.Binding.String("old_name"); old != "" {
					renames = true
				}
			}
		}
	}
	if total > planner.MaxDesiredBytes {
		return nil, fmt.Errorf("%w: its bindings are %d bytes of JSON, over the limit of %d", errStateTooLarge, total, planner.MaxDesiredBytes)
	}
	if renames {
		d := st.Desired()
		d.Remove = nil // a tombstone never conflicts with an upsert of its own name
		if err := planner.Validate(d); err != nil {
			return nil, fmt.Errorf("the folded desired state is invalid: %w", err)
		}
	}
	data, err := encodeState(st)
	if err != nil {
		return nil, err
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%w: %d bytes, over the %d bytes one NATS message may carry (max_payload)", errStateTooLarge, len(data), limit)
	}
	return data, nil
}
