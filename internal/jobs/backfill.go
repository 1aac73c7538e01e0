package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// Backfill work is a second lane beside live events (docs/architecture.md,
// "Scale"): `reconciler backfill` enqueues one work item per script of a
// run in the backfill stream; runners pull items only while no live work
// waits and fewer than Config.BackfillInflight items are held, fold each
// like an event, reconcile the script on the backfill lane (its API calls
// come after live ones for the budget), record the script's result in the
// results stream, and only then acknowledge the item. So a backfill of any
// size holds a bounded number of unacknowledged messages, and a live event
// is never queued behind backfill work.

// backfillItem is what a work item says besides its event.
type backfillItem struct {
	run            string
	key            string
	modifiedOn     string // the namespace listing's modified_on, when listed
	skipUnmodified bool
}

// decodeBackfillItem decodes a work item: its event must be about the
// script its subject names.
func decodeBackfillItem(m message, prefix string) (*backfillItem, *event.Event, error) {
	run, key, ok := state.ParseBackfillSubject(m.Subject(), prefix)
	if !ok {
		return nil, nil, event.Invalidf(event.ReasonSubjectMismatch, "backfill item on subject %q (want %s.<run>.<account>.<namespace>.<script>)", m.Subject(), prefix)
	}
	item := &backfillItem{run: run, key: key}
	if h := m.Headers(); h != nil {
		item.modifiedOn = h.Get(state.HeaderListedModified)
		item.skipUnmodified = h.Get(state.HeaderSkipUnmodified) == "1"
	}
	ev, err := event.DecodeEvent(m.Data(), "", "")
	if err != nil {
		return item, nil, err
	}
	if ev.Key() != key {
		return item, nil, event.Invalidf(event.ReasonSubjectMismatch, "backfill item for %s arrived on subject %q", ev.Ref(), m.Subject())
	}
	return item, ev, nil
}

// pullBackfill is the backfill lane's intake: it fetches work items only
// while no live script waits for a worker and the lane holds fewer than
// BackfillInflight items, and folds them like events. It stops when ctx
// ends.
func (r *Runner) pullBackfill(ctx, workCtx context.Context) {
	idle := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-r.clock.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		room := r.cfg.BackfillInflight - r.waiting.counts()[laneBackfill]
		if room <= 0 || r.queue.Ready(laneLive) > 0 || r.auth.wait() > 0 {
			if !idle(20 * time.Millisecond) {
				return
			}
			continue
		}
		batch, err := r.res.BackfillConsumer.Fetch(room, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				r.log.Warn("fetching backfill work", zap.Error(err))
			}
			if !idle(time.Second) {
				return
			}
			continue
		}
		var msgs []message
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			r.log.Warn("fetching backfill work", zap.Error(err))
		}
		if len(msgs) > 0 {
			r.intakeBatch(workCtx, msgs, laneBackfill)
		}
	}
}

// publishResult records the result of backfill item h.
func (r *Runner) publishResult(ctx context.Context, h *waitingEvent, outcome string, reason event.Reason, msg string) error {
	item := h.backfill
	if item == nil {
		return nil
	}
	res := state.BackfillResult{Run: item.run, Script: item.key, Outcome: outcome, Reason: reason, Error: msg, At: time.Now().UTC()}
	data, err := json.Marshal(res)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	m := nats.NewMsg(r.cfg.ResultsPrefix + "." + item.run + "." + item.key)
	m.Data = data
	if _, err := r.pub.PublishMsg(pctx, m); err != nil {
		return err
	}
	r.m.BackfillScripts.WithLabelValues(outcome).Inc()
	return nil
}

// resultAttempts bounds the tries of storeResult; resultBackoff is the
// wait before the second, doubled for each one after.
const (
	resultAttempts = 4
	resultBackoff  = 50 * time.Millisecond
)

// storeResult publishes a backfill result (publishResult), trying again
// after a short backoff when the results stream does not answer, so that
// a brief outage does not cost the item a delivery. An error means the
// result is not stored: the caller must hand the item back rather than
// settle it, or the run would wait for its result for ever. For an item a
// hand-back would not bring back (its last delivery, or one JetStream has
// given up on) it keeps trying, a round every resultPause with the
// message kept alive, until the result is stored or ctx ends.
func (r *Runner) storeResult(ctx context.Context, h *waitingEvent, outcome string, reason event.Reason, msg string) error {
	_, gone := h.ack.(noAck)
	lastChance := gone || int(h.delivered) >= r.cfg.MaxDeliver
	var err error
	for i := 0; ; i++ {
		if i > 0 {
			wait := resultBackoff << (i - 1)
			if i >= resultAttempts {
				if !lastChance {
					return err
				}
				r.log.Warn("recording a backfill result failed on the item's last delivery; trying again", zap.Error(err))
				_ = h.ack.InProgress()
				wait = resultPause
			}
			select {
			case <-ctx.Done():
				if lastChance {
					r.log.Error("a backfill result was never recorded: its run waits for it until resumed", zap.Error(err))
				}
				return err
			case <-r.clock.After(wait):
			}
		}
		if err = r.publishResult(ctx, h, outcome, reason, msg); err == nil {
			return nil
		}
	}
}

// resultPause is the wait between the tries of storeResult once its
// resultAttempts are spent on an item's last delivery.
const resultPause = time.Second

// backfillItemOf rebuilds the item of a dead-lettered backfill message
// from its subject.
func (r *Runner) backfillItemOf(subject string) *backfillItem {
	run, key, ok := state.ParseBackfillSubject(subject, r.cfg.BackfillPrefix)
	if !ok {
		return nil
	}
	return &backfillItem{run: run, key: key}
}

// resync queues a reconcile of every script in the desired-state bucket,
// on the backfill lane (live work first).
func (r *Runner) resync(ctx context.Context) {
	n, err := r.Resync(ctx)
	if err != nil {
		r.log.Warn("resync", zap.Error(err))
		return
	}
	r.log.Info("resync queued scripts", zap.Int("scripts", n))
}

// ScriptLister is what a resync needs to list a dispatch namespace's
// scripts with their modified_on (cfapi.Client has it).
type ScriptLister interface {
	EachScript(ctx context.Context, accountID, namespace string, opts cfapi.ListScriptsOptions, fn func(cfapi.ScriptInfo) error) error
}

// Resync queues a reconcile, on the backfill lane, of every script in the
// desired-state bucket that may have drifted, and returns how many. When
// the API client can list dispatch namespaces, a script whose listed
// modified_on equals the one its last-applied record holds (recorded when
// a read found it converged) and whose desired state is applied is not
// queued: drift repair costs the list pages plus a read of each script
// that changed. Scripts of ordinary Workers, and every script when the
// listing fails, are queued.
func (r *Runner) Resync(ctx context.Context) (int, error) {
	desired, err := r.st.DesiredRevisions(ctx)
	if err != nil {
		return 0, err
	}
	recorded := map[string]state.AppliedMark{}
	if _, ok := r.api.(ScriptLister); ok {
		if recorded, err = r.st.AppliedMarks(ctx); err != nil {
			return 0, err
		}
	}
	byNamespace := map[[2]string][]string{}
	for key := range desired {
		ref, err := event.ParseScriptKey(key)
		if err != nil {
			continue
		}
		byNamespace[[2]string{ref.AccountID, ref.Namespace}] = append(byNamespace[[2]string{ref.AccountID, ref.Namespace}], key)
	}
	n := 0
	for ns, keys := range byNamespace {
		listed := r.listModified(ctx, ns[0], ns[1])
		for _, key := range keys {
			mark, hasMark := recorded[key]
			modified, isListed := listed[key]
			if isListed && hasMark && mark.ModifiedOn == modified && mark.DesiredRev >= desired[key] {
				continue // untouched since a read found it converged
			}
			if isListed {
				r.waiting.setModifiedOn(key, modified)
			}
			r.queue.Add(key, laneBackfill)
			n++
		}
	}
	return n, nil
}

// listModified lists a dispatch namespace's scripts: key → modified_on
// (empty for ordinary Workers, or when listing is not possible).
func (r *Runner) listModified(ctx context.Context, account, namespace string) map[string]string {
	lister, ok := r.api.(ScriptLister)
	if !ok || namespace == "" || r.listUnsupported.Load() {
		return nil
	}
	out := map[string]string{}
	err := lister.EachScript(laneContext(ctx, laneBackfill), account, namespace, cfapi.ListScriptsOptions{Limit: cfapi.MaxListLimit},
		func(s cfapi.ScriptInfo) error {
			out[event.ScriptKey(cfapi.ScriptRef{AccountID: account, Namespace: namespace, Script: s.ID})] = s.ModifiedOn
			return nil
		})
	if err != nil {
		if cfapi.IsListUnsupported(err) {
			r.noteListUnsupported(namespace, err) // fallback.go
			return nil
		}
		r.log.Warn("resync: listing a namespace; its scripts are all read", zap.String("namespace", namespace), zap.Error(err))
		return nil
	}
	return out
}

// recoverOnStart reconciles every script whose desired state is newer
// than the revision its last-applied record was planned from: after a
// crash, the events the dead process held come back only after AckWait,
// and their scripts need not wait that long. Both buckets are read with
// one watcher each, keys and revisions only where possible.
func (r *Runner) recoverOnStart(ctx context.Context) {
	desired, err := r.st.DesiredRevisions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("recovery scan of the desired state", zap.Error(err))
		}
		return
	}
	applied, err := r.st.AppliedMarks(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("recovery scan of the last-applied state", zap.Error(err))
		}
		return
	}
	n := 0
	for key, rev := range desired {
		if applied[key].DesiredRev < rev {
			if _, err := event.ParseScriptKey(key); err == nil {
				r.queue.Add(key, laneLive)
				n++
			}
		}
	}
	if n > 0 {
		r.log.Info("recovering scripts whose desired state was not applied yet", zap.Int("scripts", n))
	}
}
