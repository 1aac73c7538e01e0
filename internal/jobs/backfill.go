package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
)

// Backfill work is a second lane beside live events (ARCHITECTURE.md,
// "Scale"): `reconciler backfill` enqueues one work item per script of a
// run in the backfill stream; runners pull items only while no live work
// waits and fewer than Config.BackfillInflight items are held, fold each
// like an event, reconcile the script on the backfill lane (its API calls
// come after live ones for the budget), record the script's result in the
// results stream, and only then acknowledge the item. So a backfill of any
// size holds a bounded number of unacknowledged messages, and a live event
// is never queued behind backfill work.

// Headers of a backfill work item.
const (
	HeaderRun            = "Reconciler-Run"
	HeaderListedModified = "Reconciler-Listed-Modified-On"
	HeaderSkipUnmodified = "Reconciler-Skip-Unmodified"
)

// Backfill results of one script.
const (
	resultChanged   = "changed"
	resultUnchanged = "unchanged"
	resultFailed    = "failed"
)

// runIDRe is what a run id may be: one subject token.
var runIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateRunID checks a backfill run id.
func ValidateRunID(id string) error {
	if !runIDRe.MatchString(id) {
		return fmt.Errorf("run id %q must be 1-64 letters, digits, '-' or '_'", id)
	}
	return nil
}

// backfillItem is what a work item says besides its event.
type backfillItem struct {
	run            string
	key            string
	modifiedOn     string // the namespace listing's modified_on, when listed
	skipUnmodified bool
}

// parseBackfillSubject splits <prefix>.<run>.<account>.<namespace>.<script>.
func parseBackfillSubject(subject, prefix string) (run, key string, ok bool) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return "", "", false
	}
	run, key, ok = strings.Cut(rest, ".")
	return run, key, ok && strings.Count(key, ".") == 2
}

// decodeBackfillItem decodes a work item: its event must be about the
// script its subject names.
func decodeBackfillItem(m message, prefix string) (*backfillItem, *Event, error) {
	run, key, ok := parseBackfillSubject(m.Subject(), prefix)
	if !ok {
		return nil, nil, invalid(ReasonSubjectMismatch, "backfill item on subject %q (want %s.<run>.<account>.<namespace>.<script>)", m.Subject(), prefix)
	}
	item := &backfillItem{run: run, key: key}
	if h := m.Headers(); h != nil {
		item.modifiedOn = h.Get(HeaderListedModified)
		item.skipUnmodified = h.Get(HeaderSkipUnmodified) == "1"
	}
	ev, err := DecodeEvent(m.Data(), "", "")
	if err != nil {
		return item, nil, err
	}
	if ev.Key() != key {
		return item, nil, invalid(ReasonSubjectMismatch, "backfill item for %s arrived on subject %q", ev.Ref(), m.Subject())
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
		case <-time.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		room := r.cfg.BackfillInflight - r.held.counts()[laneBackfill]
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
			r.foldBatch(workCtx, msgs, laneBackfill)
		}
	}
}

// BackfillResult is the outcome of one script of a backfill run, stored
// in the results stream under <results prefix>.<run>.<account>.<namespace>.<script>.
type BackfillResult struct {
	Run     string    `json:"run"`
	Script  string    `json:"script"` // account.namespace.script
	Outcome string    `json:"outcome"`
	Reason  Reason    `json:"reason,omitempty"`
	Error   string    `json:"error,omitempty"`
	At      time.Time `json:"at"`
}

// publishResult records the result of backfill item h.
func (r *Runner) publishResult(ctx context.Context, h *heldEvent, outcome string, reason Reason, msg string) error {
	item := h.backfill
	if item == nil {
		return nil
	}
	res := BackfillResult{Run: item.run, Script: item.key, Outcome: outcome, Reason: reason, Error: msg, At: time.Now().UTC()}
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

// backfillItemOf rebuilds the item of a dead-lettered backfill message
// from its subject.
func (r *Runner) backfillItemOf(subject string) *backfillItem {
	run, key, ok := parseBackfillSubject(subject, r.cfg.BackfillPrefix)
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
	desired, err := watchRevisions(ctx, r.st.desired, true, nil)
	if err != nil {
		return 0, err
	}
	recorded := map[string]appliedMark{}
	if _, ok := r.api.(ScriptLister); ok {
		if recorded, err = appliedMarks(ctx, r.st.applied); err != nil {
			return 0, err
		}
	}
	byNamespace := map[[2]string][]string{}
	for key := range desired {
		ref, err := ParseScriptKey(key)
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
			if isListed && hasMark && mark.modifiedOn == modified && mark.desiredRev >= desired[key] {
				continue // untouched since a read found it converged
			}
			if isListed {
				r.held.setModifiedOn(key, modified)
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
	if !ok || namespace == "" {
		return nil
	}
	out := map[string]string{}
	err := lister.EachScript(laneContext(ctx, laneBackfill), account, namespace, cfapi.ListScriptsOptions{Limit: cfapi.MaxListLimit},
		func(s cfapi.ScriptInfo) error {
			out[ScriptKey(cfapi.ScriptRef{AccountID: account, Namespace: namespace, Script: s.ID})] = s.ModifiedOn
			return nil
		})
	if err != nil {
		r.log.Warn("resync: listing a namespace; its scripts are all read", zap.String("namespace", namespace), zap.Error(err))
		return nil
	}
	return out
}

// appliedMark is what a resync needs of a last-applied record.
type appliedMark struct {
	modifiedOn string
	desiredRev uint64
}

// appliedMarks reads every last-applied record's listing mark.
func appliedMarks(ctx context.Context, kv jetstream.KeyValue) (map[string]appliedMark, error) {
	out := map[string]appliedMark{}
	_, err := watchRevisions(ctx, kv, false, func(key string, v []byte) uint64 {
		var rec struct {
			Rev        uint64 `json:"desired_revision"`
			ModifiedOn string `json:"modified_on"`
		}
		_ = json.Unmarshal(v, &rec)
		out[key] = appliedMark{modifiedOn: rec.ModifiedOn, desiredRev: rec.Rev}
		return rec.Rev
	})
	return out, err
}

// recoverOnStart reconciles every script whose desired state is newer
// than the revision its last-applied record was planned from: after a
// crash, the events the dead process held come back only after AckWait,
// and their scripts need not wait that long. Both buckets are read with
// one watcher each, keys and revisions only where possible.
func (r *Runner) recoverOnStart(ctx context.Context) {
	desired, err := watchRevisions(ctx, r.st.desired, true, nil)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("recovery scan of the desired state", zap.Error(err))
		}
		return
	}
	applied, err := watchRevisions(ctx, r.st.applied, false, func(_ string, v []byte) uint64 {
		var rec struct {
			Rev uint64 `json:"desired_revision"`
		}
		_ = json.Unmarshal(v, &rec)
		return rec.Rev
	})
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("recovery scan of the last-applied state", zap.Error(err))
		}
		return
	}
	n := 0
	for key, rev := range desired {
		if applied[key] < rev {
			if _, err := ParseScriptKey(key); err == nil {
				r.queue.Add(key, laneLive)
				n++
			}
		}
	}
	if n > 0 {
		r.log.Info("recovering scripts whose desired state was not applied yet", zap.Int("scripts", n))
	}
}

// watchRevisions reads every key of kv once: its revision, or with
// value, what value returns of it.
func watchRevisions(ctx context.Context, kv jetstream.KeyValue, metaOnly bool, value func(key string, v []byte) uint64) (map[string]uint64, error) {
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	if metaOnly {
		opts = append(opts, jetstream.MetaOnly())
	}
	w, err := kv.WatchAll(ctx, opts...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	out := map[string]uint64{}
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e := <-w.Updates():
			if e == nil {
				return out, nil // initial values done
			}
			if value != nil {
				out[e.Key()] = value(e.Key(), e.Value())
			} else {
				out[e.Key()] = e.Revision()
			}
		}
	}
}
