package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/planner"
)

// TerminalError is a failure that retrying cannot fix: the events behind it
// are dead-lettered with Reason. Match it with errors.As.
type TerminalError struct {
	Reason string
	Err    error
}

func (e *TerminalError) Error() string { return e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

func terminal(reason string, err error) error { return &TerminalError{Reason: reason, Err: err} }

// Result is the outcome of a successful reconcile.
type Result struct {
	Wrote     bool
	Strategy  planner.Strategy
	LeaseBusy bool // another replica holds the script; try again shortly
	Plan      *planner.Plan
}

// classify turns an API error into a terminal error when retrying cannot
// help; transient errors are returned as they are.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *cfapi.APIError
	if errors.As(err, &apiErr) && !apiErr.Retryable() {
		if apiErr.NotFound() {
			return terminal("not_found", err)
		}
		return terminal("api_rejected", err)
	}
	return err
}

// reconcile converges one script: read desired, last-applied and live
// state, plan, write the difference with the planned strategy, and record
// what was applied. It holds the script's lease throughout.
func (r *Runner) reconcile(ctx context.Context, key string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReconcileTimeout)
	defer cancel()
	ref, err := ParseScriptKey(key)
	if err != nil {
		return Result{}, terminal("invalid_desired_state", err)
	}
	st := r.res.stores
	l, ok, err := st.acquireLease(ctx, key, r.cfg.Owner)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{LeaseBusy: true}, nil
	}
	// Keep the lease alive during long budget waits and uploads; if it is
	// lost, stop before writing.
	leaseCtx, leaseLost := context.WithCancelCause(ctx)
	defer leaseLost(nil)
	stopRenew := make(chan struct{})
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		t := time.NewTicker(max(r.cfg.LeaseTTL/3, 50*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stopRenew:
				return
			case <-t.C:
				if err := st.renewLease(ctx, l, r.cfg.Owner); err != nil {
					leaseLost(err)
					return
				}
			}
		}
	}()
	defer func() {
		close(stopRenew)
		<-renewDone
		st.releaseLease(context.WithoutCancel(ctx), l)
	}()
	return r.reconcileLocked(leaseCtx, ref, key)
}

func (r *Runner) reconcileLocked(ctx context.Context, ref cfapi.ScriptRef, key string) (Result, error) {
	st := r.res.stores
	state, desiredRev, err := st.loadDesired(ctx, key)
	if errors.Is(err, errNotFound) {
		return Result{}, nil // nothing desired for this script
	}
	if err != nil {
		return Result{}, err
	}
	rec, err := st.loadApplied(ctx, key)
	if err != nil {
		return Result{}, err
	}
	settings, err := r.api.GetSettings(ctx, ref)
	if err != nil {
		return Result{}, classify(err)
	}
	desired := state.Desired()
	plan, err := r.planner.Plan(desired, settings.Bindings, rec.LastApplied())
	if err != nil {
		return Result{}, terminal("invalid_desired_state", err)
	}
	if plan.NoOp() {
		if !rec.LastApplied().Equal(plan.Applied) {
			rec = &AppliedRecord{Version: 1, Bindings: plan.Applied.Bindings, DesiredRevision: desiredRev, Strategy: rec.Strategy, AppliedAt: rec.AppliedAt}
			if err := st.saveApplied(ctx, key, rec); err != nil {
				return Result{}, err
			}
		}
		return Result{Plan: plan}, nil
	}
	if ctx.Err() != nil {
		return Result{}, fmt.Errorf("not writing: %w", context.Cause(ctx))
	}
	if err := r.write(ctx, ref, plan, settings); err != nil {
		return Result{}, err
	}
	r.m.Writes.WithLabelValues(string(plan.Strategy)).Inc()
	// Record after success only; a crash before this line leaves the event
	// unacknowledged, and the next reconcile finds nothing left to change.
	err = st.saveApplied(context.WithoutCancel(ctx), key, &AppliedRecord{
		Version: 1, Bindings: plan.Applied.Bindings, DesiredRevision: desiredRev,
		Strategy: string(plan.Strategy), AppliedAt: time.Now().UTC(),
	})
	if err != nil {
		return Result{}, err
	}
	r.log.Debug("plan applied", zap.String("script", key), zap.String("plan", plan.String()))
	return Result{Wrote: true, Strategy: plan.Strategy, Plan: plan}, nil
}

// write performs the plan's request with its strategy.
func (r *Runner) write(ctx context.Context, ref cfapi.ScriptRef, plan *planner.Plan, settings *cfapi.Settings) error {
	switch plan.Strategy {
	case planner.StrategySettings:
		_, err := r.api.PatchSettings(ctx, ref, cfapi.SettingsPatch{Bindings: plan.Request.Bindings})
		return classify(err)
	case planner.StrategyScript, planner.StrategyVersion:
		content, err := r.api.GetScriptContent(ctx, ref)
		if err != nil {
			return classify(err)
		}
		up, err := uploadFor(plan, settings, content, plan.Strategy == planner.StrategyVersion)
		if err != nil {
			return terminal("invalid_desired_state", err)
		}
		if plan.Strategy == planner.StrategyScript {
			_, err = r.api.UploadScript(ctx, ref, up)
			return classify(err)
		}
		v, err := r.api.CreateVersion(ctx, ref, up)
		if err != nil {
			return classify(err)
		}
		_, err = r.api.DeployVersion(ctx, ref, v.ID, "reconciler: bindings")
		return classify(err)
	}
	return terminal("invalid_desired_state", fmt.Errorf("plan has unknown strategy %q", plan.Strategy))
}

// uploadFor builds a script upload that carries the script's own modules
// and settings back unchanged, with the plan's bindings.
func uploadFor(plan *planner.Plan, settings *cfapi.Settings, content *cfapi.ScriptContent, version bool) (cfapi.ScriptUpload, error) {
	have := map[string]bool{}
	for _, m := range content.Modules {
		have[m.Name] = true
	}
	for _, p := range plan.NeedsParts {
		if !have[p] {
			return cfapi.ScriptUpload{}, fmt.Errorf("binding part %q is not a part of the script's current upload (parts: %v)", p, moduleNames(content.Modules))
		}
	}
	md := cfapi.UploadMetadata{
		Bindings:     plan.Request.Bindings,
		KeepBindings: plan.Request.KeepBindings,
		Other:        cfapi.SettingsForUpload(settings, version),
	}
	if content.ServiceWorker {
		if version {
			return cfapi.ScriptUpload{}, errors.New("strategy version needs a module-syntax Worker; this one uses service-worker syntax")
		}
		md.BodyPart = content.MainModule
	} else {
		md.MainModule = content.MainModule
	}
	if version {
		md.Annotations = map[string]string{"workers/message": "reconciler: bindings"}
	}
	return cfapi.ScriptUpload{Metadata: md, Modules: content.Modules}, nil
}

func moduleNames(ms []cfapi.Module) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}
