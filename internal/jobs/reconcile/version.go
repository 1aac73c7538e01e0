package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// This file holds what a write needs to know about a script's versions
// and deployments (docs/versions.md):
//
//   - the version strategy for ordinary Workers: read the active
//     deployment and the deployed version with its modules (2 reads), then
//     create and deploy the new version in one request of the beta Workers
//     API, every binding that stays inherited from the deployed version;
//   - gradual deployments: before any write to an ordinary Worker (and to
//     a dispatch namespace script with Config.SplitCheckDispatch), the
//     active deployment is read once; when it splits traffic between two
//     versions the script is held (Result.Held), its events stay
//     unacknowledged, and it is checked again after Config.HoldRetry;
//   - a settings PATCH refused with 10214 (the latest version is not the
//     deployed one, after a `wrangler versions upload` without a deploy)
//     is written as a version built on the deployed version instead;
//   - the annotations that say who wrote a version.

// liveState is what a reconcile read of a script: before planning, the
// settings or (version strategy, ordinary Workers) the deployed version;
// before writing, the active deployment when it matters. A member is nil
// until it is read.
type liveState struct {
	// settings is GET …/settings: the bindings and configuration of the
	// deployed version (of the larger share of a split).
	settings *cfapi.Settings
	// deploymentsRead tells whether the deployments were read;
	// deployment is then the active one (nil when the script has none).
	deploymentsRead bool
	deployment      *cfapi.ScriptDeployment
	// version is the deployed version of an ordinary Worker with its
	// modules, read instead of the settings by the version strategy.
	version *cfapi.WorkerVersion
}

// bindings returns the live bindings to plan against.
func (lv *liveState) bindings() []wire.Binding {
	if lv.version != nil {
		return lv.version.Bindings
	}
	return lv.settings.Bindings
}

// deployedID returns the version that serves all of the script's traffic:
// "" when the deployments were not read, the script has none, or its
// traffic is split.
func (lv *liveState) deployedID() string {
	if lv.deployment == nil || len(lv.deployment.Versions) != 1 {
		return ""
	}
	return lv.deployment.Versions[0].VersionID
}

// readLive reads what planning needs. With the version strategy, an
// ordinary Worker is read through its deployment: the active deployment,
// then the deployed version with its modules, which holds the live
// bindings, the code and the versioned settings the new version carries
// (2 reads, and no GET settings). Any other script, or a Worker whose
// traffic is split or that has no deployment, is read with GET settings.
func (r *Reconciler) readLive(ctx context.Context, ref cfapi.ScriptRef, requested planner.Strategy) (*liveState, error) {
	lv := &liveState{}
	if requested == planner.StrategyVersion && !ref.Dispatch() {
		if err := r.readDeployment(ctx, ref, lv); err != nil {
			return nil, err
		}
		if id := lv.deployedID(); id != "" {
			v, err := r.api.GetWorkerVersion(ctx, ref, id, true)
			if err != nil {
				return nil, err
			}
			lv.version = v
			return lv, nil
		}
	}
	s, err := r.api.GetSettings(ctx, ref)
	if err != nil {
		return nil, err
	}
	lv.settings = s
	return lv, nil
}

// readDeployment reads the script's active deployment into lv (one read).
func (r *Reconciler) readDeployment(ctx context.Context, ref cfapi.ScriptRef, lv *liveState) error {
	ds, err := r.api.ListDeployments(ctx, ref)
	if err != nil {
		return err
	}
	lv.deploymentsRead, lv.deployment = true, nil
	if len(ds) > 0 {
		d := ds[0] // newest first: the active one
		lv.deployment = &d
	}
	return nil
}

// splitMatters reports whether a write to ref must first make sure that
// the script is not in a gradual deployment. Every write to an ordinary
// Worker deploys a new version at 100% (a settings PATCH included, in the
// worst case), so ordinary Workers are always checked; dispatch namespace
// scripts only with Config.SplitCheckDispatch.
func (r *Reconciler) splitMatters(ref cfapi.ScriptRef) bool {
	return !ref.Dispatch() || r.cfg.SplitCheckDispatch
}

// guardSplit reads the active deployment unless lv has it, and holds the
// script when it splits traffic between two versions.
func (r *Reconciler) guardSplit(ctx context.Context, ref cfapi.ScriptRef, lv *liveState) error {
	if !lv.deploymentsRead {
		if err := r.readDeployment(ctx, ref, lv); err != nil {
			return classify(err)
		}
	}
	if d := lv.deployment; d != nil && d.Split() {
		shares := make([]string, len(d.Versions))
		for i, v := range d.Versions {
			shares[i] = fmt.Sprintf("%s %g%%", v.VersionID, v.Percentage)
		}
		return &holdError{reason: metrics.HoldGradualDeployment,
			detail: fmt.Sprintf("deployment %s splits traffic between versions (%s)", d.ID, strings.Join(shares, ", "))}
	}
	return nil
}

// holdError says that a script must not be written now: its events stay
// held (never dead-lettered, never acknowledged) and it is reconciled
// again after Config.HoldRetry.
type holdError struct {
	reason string // a metrics.Hold* value
	detail string
}

func (e *holdError) Error() string { return "held (" + e.reason + "): " + e.detail }

// hold turns a hold into the reconcile's result.
func (r *Reconciler) hold(key string, res Result, h *holdError) Result {
	d := r.cfg.HoldRetry
	d += time.Duration(rand.Int64N(int64(d/5) + 1)) // spread the re-checks
	r.log.Info("script held: not written while its traffic is split; its events stay unacknowledged",
		zap.String("script", key), zap.String("reason", h.reason), zap.String("detail", h.detail), zap.Duration("retry_in", d))
	res.Requeue, res.RequeueAfter, res.Held = true, d, h.reason
	return res
}

// isNotDeployed reports the API's refusal of a settings PATCH because the
// latest version is not the deployed one (10214).
func isNotDeployed(err error) bool {
	var apiErr *cfapi.APIError
	return errors.As(err, &apiErr) && apiErr.CodeIs(cfapi.CodeSettingsNotDeployed)
}

// versionInstead writes a settings plan as a version built on the
// deployed version, after the API refused the PATCH with 10214: someone
// uploaded a version without deploying it, so a PATCH (which builds on the
// latest version) cannot be applied until they deploy it, which may be
// never. The new version carries the deployed code and bindings plus the
// change and is deployed at 100%; the undeployed version stays as it is.
// The deployment is read again first: the refusal says that the versions
// changed since the plan was made.
func (r *Reconciler) versionInstead(ctx context.Context, ref cfapi.ScriptRef, plan *planner.Plan, lv *liveState,
	ann map[string]string, cause error) (planner.Strategy, error) {
	vp, err := plan.As(planner.StrategyVersion)
	if err != nil {
		return "", terminal(event.ReasonInvalidDesired, err)
	}
	LoggerFrom(ctx, r.log).Info("settings PATCH refused because the latest version is not deployed; writing a version built on the deployed one",
		zap.String("script", ref.String()), zap.Error(cause))
	fresh := &liveState{settings: lv.settings}
	if err := r.guardSplit(ctx, ref, fresh); err != nil {
		return "", err
	}
	return planner.StrategyVersion, r.writeVersion(ctx, ref, vp, fresh, ann)
}

// writeVersion writes a version plan. An ordinary Worker gets one request
// of the beta API (POST …/workers/workers/{w}/versions?deploy=true) with
// the deployed version's modules and versioned settings; every binding
// that stays is an inherit entry pinned to the deployed version, so
// neither an undeployed newer version nor keep_bindings decides what is
// carried over. A dispatch namespace script keeps the multipart path: its
// content, a version upload and a deployment at 100%, pinned too when the
// deployment was read (Config.SplitCheckDispatch).
func (r *Reconciler) writeVersion(ctx context.Context, ref cfapi.ScriptRef, plan *planner.Plan, lv *liveState, ann map[string]string) error {
	if r.splitMatters(ref) {
		if err := r.guardSplit(ctx, ref, lv); err != nil {
			return err
		}
	}
	pin := lv.deployedID()
	bindings := pinInherits(plan.Request.Bindings, pin)
	if ref.Dispatch() {
		content, err := r.api.GetScriptContent(ctx, ref)
		if err != nil {
			return classify(err)
		}
		up, err := uploadFor(plan, lv.settings, content, true)
		if err != nil {
			return terminal(event.ReasonInvalidDesired, err)
		}
		up.Metadata.Bindings, up.Metadata.Annotations = bindings, ann
		v, err := r.api.CreateVersion(ctx, ref, up)
		if err != nil {
			return classify(err)
		}
		_, err = r.api.DeployVersion(ctx, ref, v.ID, ann[annotationMessage])
		return classify(err)
	}
	base := lv.version
	if base == nil || (pin != "" && base.ID != pin) {
		id := pin
		if id == "" {
			id = "latest" // no deployment: build on the newest version
		}
		v, err := r.api.GetWorkerVersion(ctx, ref, id, true)
		if err != nil {
			return classify(err)
		}
		base = v
	}
	nv, err := versionOn(base, plan, bindings, ann)
	if err != nil {
		return err
	}
	_, err = r.api.CreateWorkerVersion(ctx, ref, nv, true)
	return classify(err)
}

// versionedMembers are the settings that belong to a version besides the
// compatibility date and flags; a new version carries them over. The
// others (logpush, tags, tail_consumers, observability) are the script's
// and a version does not change them.
var versionedMembers = []string{"limits", "placement", "usage_model"}

// versionOn builds the beta version that changes base by plan: base's
// modules and versioned settings, the given bindings, the annotations.
func versionOn(base *cfapi.WorkerVersion, plan *planner.Plan, bindings []wire.Binding, ann map[string]string) (cfapi.NewWorkerVersion, error) {
	if len(base.Modules) == 0 || base.MainModule == "" {
		return cfapi.NewWorkerVersion{}, fmt.Errorf("version %s was read without its modules", base.ID)
	}
	names := make([]string, len(base.Modules))
	for i, m := range base.Modules {
		names[i] = m.Name
	}
	for _, p := range plan.NeedsParts {
		if !slices.Contains(names, p) {
			return cfapi.NewWorkerVersion{}, terminal(event.ReasonInvalidDesired,
				fmt.Errorf("binding part %q is not a module of the deployed version %s (modules: %v)", p, base.ID, names))
		}
	}
	other := map[string]json.RawMessage{}
	for _, k := range versionedMembers {
		v, ok := base.Other[k]
		if !ok || string(v) == "null" || (k == "placement" && string(v) == "{}") {
			continue
		}
		other[k] = v
	}
	return cfapi.NewWorkerVersion{MainModule: base.MainModule, Modules: base.Modules, Bindings: bindings,
		CompatibilityDate: base.CompatibilityDate, CompatibilityFlags: base.CompatibilityFlags,
		Annotations: ann, Other: other}, nil
}

// pinInherits returns bs with every inherit entry pinned to versionID
// (its old_name kept): without a version_id the API resolves an inherit
// against the latest version, which is not the deployed one after a
// version upload without a deploy. versionID "" leaves bs as it is.
func pinInherits(bs []wire.Binding, versionID string) []wire.Binding {
	if versionID == "" {
		return bs
	}
	out := make([]wire.Binding, len(bs))
	for i, b := range bs {
		if b.Type() == wire.TypeInherit {
			oldName, _ := b.String("old_name")
			b = cfapi.InheritFrom(b.Name(), oldName, versionID)
		}
		out[i] = b
	}
	return out
}

// Annotations of the versions (and deployments) the reconciler writes.
// workers/message is the only one the API reference lets every such
// request carry (workers/triggered_by is set by the API), and it is cut at
// cfapi.MaxAnnotationMessage bytes.
const (
	annotationMessage = cfapi.AnnotationMessage
	maxAnnotation     = cfapi.MaxAnnotationMessage
)

// writeAnnotations says who writes plan and why, in workers/message: the
// changed bindings ("reconciler: bindings +KV ~PLAN -OLD", at most half
// the limit) and the events whose operations the write carries out,
// newest first ("(event <id>)", "(events <id> <id> +3)"), within
// maxAnnotation bytes. Binding names and event ids are not secret; values
// never appear.
func writeAnnotations(ds *event.DesiredState, plan *planner.Plan) map[string]string {
	var changes []string
	for _, a := range plan.Actions {
		switch a.Kind {
		case planner.ActionAdd:
			changes = append(changes, "+"+a.Name)
		case planner.ActionUpdate:
			changes = append(changes, "~"+a.Name)
		case planner.ActionRemove:
			changes = append(changes, "-"+a.Name)
		}
	}
	msg := clip("reconciler: bindings "+strings.Join(changes, " "), maxAnnotation/2)
	if ev := eventsNote(eventIDs(ds, plan), maxAnnotation-len(msg)-3); ev != "" {
		msg += " (" + ev + ")"
	}
	return map[string]string{annotationMessage: msg}
}

// eventIDs returns the ids of the events whose operations plan carries
// out, newest first: the newest operation on each changed name, or the
// replace that set the floor for a name no longer desired.
func eventIDs(ds *event.DesiredState, plan *planner.Plan) []string {
	var stamps []event.Stamp
	for _, a := range plan.Actions {
		if !a.Changes() {
			continue
		}
		switch op := ds.Names[a.Name]; {
		case op != nil && op.Q == nil:
			stamps = append(stamps, op.Stamp)
		case op == nil && ds.Floor != nil:
			stamps = append(stamps, *ds.Floor)
		}
	}
	slices.SortFunc(stamps, func(a, b event.Stamp) int { return b.Compare(a) })
	stamps = slices.Compact(stamps)
	ids := make([]string, 0, len(stamps))
	for _, s := range stamps {
		if s.ID != "" && !slices.Contains(ids, s.ID) {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// eventsNote renders as many of ids as fit in n bytes, with "+k" for the
// k that do not: "event <id>", "events <id> <id> +3"; "" without ids.
func eventsNote(ids []string, n int) string {
	switch len(ids) {
	case 0:
		return ""
	case 1:
		return clip("event "+ids[0], n)
	}
	out := "events"
	for i, id := range ids {
		rest := ""
		if left := len(ids) - i - 1; left > 0 {
			rest = fmt.Sprintf(" +%d", left)
		}
		if len(out)+1+len(id)+len(rest) > n {
			if i == 0 {
				return clip(out+" "+id, n)
			}
			return out + fmt.Sprintf(" +%d", len(ids)-i)
		}
		out += " " + id
	}
	return out
}

// clip cuts s to at most n bytes, ending with "…" when it cuts, without
// splitting a character.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
