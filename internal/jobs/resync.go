package jobs

import (
	"context"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// resyncer queues the scripts that need a reconcile without an event:
// every script that may have drifted, every Config.ResyncInterval (on the
// backfill lane), and, when Run starts, every script whose desired state
// is newer than its last-applied record (crash recovery, on the live
// lane).
//
// A fallback where the API behaves unlike what the reconciler assumed
// where its reference is silent (cfapi's guesses.go; `reconciler doctor`
// checks it on an account), remembered per process and logged once: the
// dispatch namespace script list answers 404 or 405, or cannot be paged
// (cfapi.IsListUnsupported); a resync then reads every script it knows,
// as it does for ordinary Workers, and lists no namespace again.
type resyncer struct {
	st      *state.Store
	api     API
	queue   *keyQueue
	waiting *waitTable
	log     *zap.Logger
	// listUnsupported is set once the API has shown that it does not
	// serve the namespace script list.
	listUnsupported atomic.Bool
}

// run queues a reconcile of every script in the desired-state bucket that
// may have drifted, on the backfill lane (live work first), and logs how
// many.
func (r *resyncer) run(ctx context.Context) {
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
func (r *resyncer) Resync(ctx context.Context) (int, error) {
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
func (r *resyncer) listModified(ctx context.Context, account, namespace string) map[string]string {
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
			r.noteListUnsupported(namespace, err)
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
func (r *resyncer) recoverOnStart(ctx context.Context) {
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

// noteListUnsupported records that the API does not serve the namespace
// script list, and warns the first time.
func (r *resyncer) noteListUnsupported(namespace string, err error) {
	if r.listUnsupported.CompareAndSwap(false, true) {
		r.log.Warn("the API does not serve the dispatch namespace script list (or it cannot be paged): resync reads every script from now on, "+
			"one GET settings each, and does not list again until restart (run `reconciler doctor`)",
			zap.String("namespace", namespace), zap.Error(err))
	}
}
