package reconcile

import (
	"context"
	"encoding/json"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// A fallback where the API behaves unlike what the reconciler assumed
// where its reference is silent (cfapi's guesses.go; `reconciler doctor`
// checks it on an account). It is remembered per process, logged once and
// never turns into a retry loop (the other one, a namespace script list
// the API does not serve, is the resync's: internal/jobs/resync.go):
//
//   - A settings PATCH refuses an entry of only {type, name}
//     (cfapi.IsTypeNameRefused): the write is made as a version instead,
//     whose inherit entries keep every value, and later settings plans
//     that hold such entries go straight to a version. Each such write is
//     counted in reconciler_strategy_fallbacks_total{from="settings",
//     to="version"}.

// settingsAsVersion writes a settings plan as a version, because the API
// refused (cause) or has refused before (cause nil) the {type, name}
// entries the PATCH needs to keep values.
func (r *Reconciler) settingsAsVersion(ctx context.Context, ref cfapi.ScriptRef, plan *planner.Plan, lv *liveState,
	ann map[string]string, cause error) (planner.Strategy, error) {
	vp, err := plan.As(planner.StrategyVersion)
	if err != nil {
		return "", terminal(event.ReasonInvalidDesired, err)
	}
	if cause != nil && r.typeNameRefused.CompareAndSwap(false, true) {
		LoggerFrom(ctx, r.log).Warn("the API refuses {type, name} entries in a settings PATCH: this process writes such changes as versions from now on, "+
			"which keep every value (set --default-strategy version to skip the refused PATCH after a restart; run `reconciler doctor`)",
			zap.String("script", ref.String()), zap.Error(cause))
	}
	r.m.StrategyFallbacks.WithLabelValues(metrics.StrategySettings, metrics.StrategyVersion).Inc()
	return planner.StrategyVersion, r.writeVersion(ctx, ref, vp, lv, ann)
}

// hasTypeName reports whether bs holds an entry of only {type, name}.
func hasTypeName(bs []wire.Binding) bool {
	for _, b := range bs {
		var fields map[string]json.RawMessage
		if json.Unmarshal(b.Raw(), &fields) == nil && len(fields) == 2 {
			if _, ok := fields["type"]; ok {
				return true
			}
		}
	}
	return false
}
