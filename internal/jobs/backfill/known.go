package backfill

import (
	"context"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// KnownScriptsFunc returns the scripts of a dispatch namespace the
// reconciler knows (those with a desired state), for a namespace run when
// the API does not serve the namespace's script list.
type KnownScriptsFunc func(ctx context.Context, account, namespace string) ([]cfapi.ScriptRef, error)

// KnownScriptsIn reads the known scripts from the desired-state bucket
// behind js; nil when there is no NATS connection.
func KnownScriptsIn(js jetstream.JetStream, names state.Names) KnownScriptsFunc {
	if js == nil {
		return nil
	}
	return func(ctx context.Context, account, namespace string) ([]cfapi.ScriptRef, error) {
		names := names.WithDefaults()
		desired, err := js.KeyValue(ctx, names.DesiredBucket)
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", names.DesiredBucket, err)
		}
		revs, err := state.NewStore(js, desired, nil, nil, state.StoreOptions{}).DesiredRevisions(ctx)
		if err != nil {
			return nil, err
		}
		var out []cfapi.ScriptRef
		for key := range revs {
			ref, err := event.ParseScriptKey(key)
			if err == nil && ref.AccountID == account && ref.Namespace == namespace {
				out = append(out, ref)
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Script < out[j].Script })
		return out, nil
	}
}

// eachKnownScript is a namespace run's fallback when listing failed with
// listErr, which cfapi.IsListUnsupported accepts: it warns once, then
// calls fn for every known script not already in emitted, with no
// modified_on (so a run that skips unmodified scripts reads each one). A
// tag filter cannot be honoured without the list: that is an error,
// before anything is queued.
func (ns *Namespace) eachKnownScript(ctx context.Context, listErr error, emitted map[string]bool, fn func(cfapi.ScriptRef) error) error {
	switch {
	case len(ns.Tags) > 0:
		return fmt.Errorf("--tag needs the namespace's script list, which this API does not serve (nothing was written; run `reconciler doctor`): %w", listErr)
	case ns.Known == nil:
		return fmt.Errorf("the API does not serve the script list of namespace %q and no pipeline state is reachable to find its scripts (nothing was written); give --from FILE: %w", ns.Namespace, listErr)
	}
	refs, err := ns.Known(ctx, ns.Account, ns.Namespace)
	if err != nil {
		return fmt.Errorf("the API does not serve the script list of namespace %q, and reading the scripts the reconciler knows failed (nothing was written): %w", ns.Namespace, err)
	}
	ns.Log.Warn("the API does not serve the dispatch namespace script list: applying the patch to the scripts the reconciler knows in it, each read (scripts it never saw are not included; give --from FILE for a complete list)",
		zap.String("namespace", ns.Namespace), zap.Int("scripts", len(refs)), zap.Bool("skip_unmodified_ignored", ns.SkipUnmodified), zap.Error(listErr))
	for _, ref := range refs {
		if emitted[event.ScriptKey(ref)] {
			continue
		}
		if err := fn(ref); err != nil {
			return err
		}
	}
	return nil
}
