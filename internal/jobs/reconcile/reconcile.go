package reconcile

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// TerminalError is a failure that retrying cannot fix: the events behind
// it are dead-lettered with event.Reason. Match it with errors.As.
type TerminalError struct {
	Reason event.Reason
	Err    error
	// Quarantined is set when the operations to blame were taken out of
	// the desired state: the script is reconciled again at once, without
	// them, and their events are dead-lettered then.
	Quarantined bool
}

func (e *TerminalError) Error() string { return e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

func terminal(reason event.Reason, err error) *TerminalError {
	return &TerminalError{Reason: reason, Err: err}
}

// Result is the outcome of a reconcile that did not fail (controller-
// runtime's reconcile.Result is the model).
type Result struct {
	// RequeueAfter, with Requeue, says when the script is to be tried
	// again (another replica holds it, a read was behind, or it is held).
	RequeueAfter time.Duration
	// Revision is the desired-state revision the reconcile read: held
	// waiting events folded at or below it are settled.
	Revision uint64
	// Wrote reports a write; Strategy is its strategy and Changes what it
	// changed, by binding name.
	Wrote    bool
	Strategy planner.Strategy
	Changes  []state.Change
	// State is the desired state read (to tell quarantined events), and
	// Record the last-applied record after the reconcile.
	State  *event.DesiredState
	Record *state.AppliedRecord
	// Held, with RequeueAfter, says the script was not written on purpose
	// and why (a metrics.Hold* reason, see version.go): its events stay
	// waiting, neither acknowledged nor dead-lettered.
	Held string
	// Quarantined says that operations the API refused were taken out of
	// the desired state: the script is reconciled again at once, without
	// them, and their events are dead-lettered then (Requeue is set).
	Quarantined bool
	// Requeue asks for another reconcile after RequeueAfter (at once when
	// it is zero); no event is settled.
	Requeue bool
}

// classify turns an API error into a terminal error when retrying cannot
// help; transient errors and auth failures are returned as they are.
func classify(err error) error {
	var apiErr *cfapi.APIError
	if err == nil || !errors.As(err, &apiErr) || apiErr.Retryable() || IsAuthFailure(err) {
		return err
	}
	if apiErr.NotFound() {
		return terminal(event.ReasonNotFound, err)
	}
	return terminal(event.ReasonAPIRejected, err)
}

// IsAuthFailure reports an API answer that rejects the credentials (HTTP
// 401/403, codes 10000, 9106, 9109): a fault of the system, not of an
// event. Reconcile returns such an error as it is.
func IsAuthFailure(err error) bool { return errors.Is(err, cfapi.ErrAuth) }

// errStaleRead is a desired-state read that returned a revision older than
// a fold this process made (a follower behind its leader).
var errStaleRead = errors.New("desired state read is behind the folds it must cover")

// Reconciler converges one script at a time: it takes the script's
// lease, reads the desired state, the last-applied record and the live
// bindings, plans, writes the difference and records what it applied. It
// holds no per-event state: the Runner decides what its Result means for
// the events waiting on the script (controller-runtime's Reconciler is the model).
type Reconciler struct {
	cfg     Config
	st      Store
	leases  Leases
	api     API
	planner *planner.Planner
	m       *metrics.Metrics
	log     *zap.Logger
	// typeNameRefused is set once the API has refused a settings PATCH's
	// {type, name} entries (fallback.go).
	typeNameRefused atomic.Bool
}

// New returns a reconciler that reads and records through st, fences its
// writes with leases, and reads and writes scripts through api.
func New(cfg Config, st Store, leases Leases, api API, p *planner.Planner, m *metrics.Metrics, log *zap.Logger) *Reconciler {
	return &Reconciler{cfg: cfg.withDefaults(), st: st, leases: leases, api: api, planner: p, m: m, log: log}
}

// Reconcile converges the script key, reading at least revision
// minRevision of its desired state: it takes the script's lease, reads the
// desired state, the last-applied record and the live bindings, plans,
// writes the difference with the planned strategy, and records what was
// applied. Every write happens while the lease is provably held. The
// lane (live or backfill) of its API calls is the priority in ctx.
//
// A Result with Requeue asks for another try (the lease is busy, a read
// was behind, the script is held, or refused operations were
// quarantined); an error is a *TerminalError when retrying cannot help.
func (r *Reconciler) Reconcile(ctx context.Context, key string, minRevision uint64) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReconcileTimeout)
	defer cancel()
	ref, err := event.ParseScriptKey(key)
	if err != nil {
		return Result{}, terminal(event.ReasonInvalidDesired, err)
	}
	ls, ok, err := r.leases.Acquire(ctx, key)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{Requeue: true, RequeueAfter: 200*time.Millisecond + rand.N(300*time.Millisecond)}, nil
	}
	defer ls.Release()
	ds, rev, err := r.readDesired(ls.Context(), key, minRevision)
	switch {
	case errors.Is(err, errStaleRead):
		return Result{Requeue: true, RequeueAfter: 100 * time.Millisecond}, nil
	case errors.Is(err, state.ErrNotFound):
		return Result{}, nil // nothing desired for this script
	case err != nil:
		return Result{}, err
	}
	res, err := r.converge(ls, ref, key, ds, rev, r.cfg.ListedModifiedOn(key))
	var term *TerminalError
	if errors.As(err, &term) && term.Quarantined {
		LoggerFrom(ctx, r.log).Warn("operations quarantined; reconciling the rest", zap.String("reason", string(term.Reason)), zap.Error(err))
		return Result{Requeue: true, Quarantined: true}, nil
	}
	return res, err
}

// readDesired reads the desired state of key, again a few times while the
// revision read is below minRevision. With minRevision > 0 a missing key is a read
// behind too (a follower that has not seen the script's first fold; the
// reconciler never deletes a desired state), not "nothing desired": that
// would leave the waiting events unsettled with nothing to reconcile them.
func (r *Reconciler) readDesired(ctx context.Context, key string, minRevision uint64) (*event.DesiredState, uint64, error) {
	for attempt := 0; ; attempt++ {
		ds, rev, err := r.st.LoadDesired(ctx, key)
		notYet := errors.Is(err, state.ErrNotFound) && minRevision > 0
		if !notYet && (err != nil || rev >= minRevision) {
			return ds, rev, err
		}
		if attempt == 3 {
			return nil, 0, fmt.Errorf("%w: read revision %d, want %d", errStaleRead, rev, minRevision)
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-r.cfg.Clock.After(time.Duration(10<<attempt) * time.Millisecond):
		}
	}
}

// converge plans state against the live bindings and writes the
// difference, holding lease ls.
func (r *Reconciler) converge(ls Lease, ref cfapi.ScriptRef, key string, ds *event.DesiredState, rev uint64, modifiedOn string) (Result, error) {
	ctx := ls.Context()
	rec, recRev, err := r.st.LoadApplied(ctx, key)
	if err != nil {
		return Result{}, err
	}
	desired, hidden := ds.PlannerInput(rec.Removed)
	desired.Strategy = r.cfg.strategyFor(desired.Strategy)
	lv, err := r.readLive(ctx, ref, desired.Strategy)
	if err != nil {
		return Result{}, r.blame(ctx, key, ds, nil, classify(err))
	}
	plan, err := r.planner.Plan(desired, lv.bindings(), withoutNames(rec.LastApplied(), hidden))
	if err != nil {
		return Result{}, r.blame(ctx, key, ds, nil, terminal(event.ReasonInvalidDesired, err))
	}
	next := &state.AppliedRecord{Version: 1, Bindings: plan.Applied.Bindings, DesiredRevision: rev,
		Strategy: rec.Strategy, AppliedAt: rec.AppliedAt, Removed: ds.Tombstones(), ModifiedOn: rec.ModifiedOn,
		WrittenBy: writtenBy(rec, ds, nil)}
	for _, n := range hidden {
		if a, ok := rec.Bindings[n]; ok {
			if next.Bindings == nil {
				next.Bindings = map[string]planner.Applied{}
			}
			next.Bindings[n] = a // left alone: ownership unchanged
		}
	}
	res := Result{Revision: rev, State: ds, Record: next}
	if plan.NoOp() {
		if modifiedOn != "" {
			next.ModifiedOn = modifiedOn // read after that listing: converged
		}
		if !next.SameAs(rec) {
			if err := ls.Check(); err != nil {
				return Result{}, err
			}
			if _, err := r.st.SaveApplied(ctx, key, next, recRev); err != nil {
				return Result{}, err
			}
		}
		return res, nil
	}
	if err := ls.Check(); err != nil {
		return Result{}, fmt.Errorf("not writing: %w", err)
	}
	// Say what the write carries out before making it, so that a crash
	// between the write and its record still counts it (WrittenBy).
	if recRev, err = r.markPending(ctx, key, rec, recRev, ds, plan); err != nil {
		return Result{}, err
	}
	used, err := r.write(ctx, ref, plan, lv, writeAnnotations(ds, plan))
	var hold *holdError
	if errors.As(err, &hold) {
		return r.hold(key, res, hold), nil
	}
	if err != nil {
		return Result{}, r.blame(ctx, key, ds, plan, err)
	}
	r.m.Writes.WithLabelValues(string(used)).Inc()
	// Record after success only; a crash or a lost lease before this
	// leaves the events unacknowledged, and the next reconcile finds
	// nothing left to change.
	if err := ls.Check(); err != nil {
		return Result{}, fmt.Errorf("written, but not recording: %w", err)
	}
	next.Strategy, next.AppliedAt, next.ModifiedOn = string(used), r.cfg.Clock.Now().UTC(), ""
	next.WrittenBy = writtenBy(rec, ds, plan)
	if _, err := r.st.SaveApplied(context.WithoutCancel(ctx), key, next, recRev); err != nil {
		return Result{}, err
	}
	if ce := LoggerFrom(ctx, r.log).Check(zap.DebugLevel, "plan applied"); ce != nil {
		ce.Write(zap.Stringer("plan", plan))
	}
	res.Wrote, res.Strategy, res.Changes = true, used, changesOf(plan)
	return res, nil
}

// writtenBy returns the record's WrittenBy after a reconcile of state
// with plan (nil: nothing written): names the plan changed get the stamp
// of their operation; the others keep theirs while still desired; and
// operations an earlier write was carrying out (rec.Pending) that are
// live now, unchanged by this plan, landed: they count too.
func writtenBy(rec *state.AppliedRecord, ds *event.DesiredState, plan *planner.Plan) map[string]event.Stamp {
	var out map[string]event.Stamp
	set := func(n string, s event.Stamp) {
		if out == nil {
			out = map[string]event.Stamp{}
		}
		out[n] = s
	}
	for n, s := range rec.WrittenBy {
		if st, ok := stampOf(ds, n); ok && (ds.Names[n] != nil || st == s) {
			set(n, s)
		}
	}
	changed := changedNames(ds, plan)
	for n, s := range rec.Pending {
		if st, ok := stampOf(ds, n); ok && st == s {
			if _, again := changed[n]; !again {
				set(n, s)
			}
		}
	}
	for n, s := range changed {
		set(n, s)
	}
	return out
}

// changedNames returns the names plan writes, with the stamps of the
// operations that decide them (the floor's for a removal a replace
// implies, see stampOf).
func changedNames(ds *event.DesiredState, plan *planner.Plan) map[string]event.Stamp {
	if plan == nil {
		return nil
	}
	out := map[string]event.Stamp{}
	for _, a := range plan.Actions {
		if !a.Changes() {
			continue
		}
		if op := ds.Names[a.Name]; op != nil {
			out[a.Name] = op.Stamp
		} else if a.Kind == planner.ActionRemove && a.Reason == planner.ReasonNotDesired && ds.Floor != nil {
			// A removal the floor implies: the replace that set it
			// carries it out.
			out[a.Name] = *ds.Floor
		}
	}
	return out
}

// stampOf returns the stamp of the operation that decides name: its own,
// or, for a name no operation holds, the floor of the newest replace.
func stampOf(ds *event.DesiredState, name string) (event.Stamp, bool) {
	if op := ds.Names[name]; op != nil {
		return op.Stamp, true
	}
	if ds.Floor != nil {
		return *ds.Floor, true
	}
	return event.Stamp{}, false
}

// markPending records in the last-applied record, before a write, the
// operations the write carries out, and returns the record's revision.
func (r *Reconciler) markPending(ctx context.Context, key string, rec *state.AppliedRecord, recRev uint64, ds *event.DesiredState, plan *planner.Plan) (uint64, error) {
	pending := changedNames(ds, plan)
	if len(pending) == 0 {
		return recRev, nil
	}
	marked := *rec
	marked.Pending = pending
	return r.st.SaveApplied(ctx, key, &marked, recRev)
}

// withoutNames returns last without the given names.
func withoutNames(last planner.LastApplied, names []string) planner.LastApplied {
	if len(names) == 0 {
		return last
	}
	out := planner.LastApplied{Bindings: make(map[string]planner.Applied, len(last.Bindings))}
	for n, a := range last.Bindings {
		if !slices.Contains(names, n) {
			out.Bindings[n] = a
		}
	}
	return out
}

// blame handles a failed reconcile. A terminal failure caused by some of
// the desired operations quarantines them (see event.NameOp.Q) so the script
// keeps converging on everything else: the operations on the bindings the
// error names, or else every operation the failed write carried. Other
// errors are returned as they are.
func (r *Reconciler) blame(ctx context.Context, key string, ds *event.DesiredState, plan *planner.Plan, err error) error {
	var term *TerminalError
	if !errors.As(err, &term) || term.Reason == event.ReasonNotFound {
		return err
	}
	ids, floor := culprits(ds, plan, err)
	if len(ids) == 0 && !floor {
		return err
	}
	q := event.Quarantine{Reason: term.Reason, Error: cfapi.Truncate(err.Error(), 1024)}
	if _, qerr := r.st.UpdateDesired(context.WithoutCancel(ctx), key, func(s *event.DesiredState) bool {
		changed := s.Quarantine(ids, q) > 0
		if floor && s.QuarantineFloor(*ds.Floor, q) {
			changed = true
		}
		return changed
	}); qerr != nil {
		LoggerFrom(ctx, r.log).Warn("quarantining failed operations", zap.Error(qerr))
		return err
	}
	term.Quarantined = true
	return term
}

// culprits returns the ids of the events whose operations caused err: the
// operations on the bindings the error names, or, when it names none of
// them, every operation the plan writes. floor is set when the removal of
// a binding no operation names (implied by the floor of the newest
// replace) is to blame: the error names it, or it names nothing and the
// plan removes such a binding.
func culprits(ds *event.DesiredState, plan *planner.Plan, err error) (ids map[string]bool, floor bool) {
	var implied []string // removals implied by the floor
	if plan != nil && ds.Floor != nil && ds.FloorQ == nil {
		for _, a := range plan.Actions {
			if a.Kind == planner.ActionRemove && ds.Names[a.Name] == nil {
				implied = append(implied, a.Name)
			}
		}
	}
	named := map[string]bool{}
	var pe *planner.Error
	var ve *wire.ValidationError
	var ae *cfapi.APIError
	switch {
	case errors.As(err, &pe):
		named[pe.Name] = true
	case errors.As(err, &ve) && ve.Name != "":
		named[ve.Name] = true
	case errors.As(err, &ae):
		for _, d := range ae.Errors {
			for name := range ds.Names {
				if mentions(d.Message, name) {
					named[name] = true
				}
			}
			for _, name := range implied {
				if mentions(d.Message, name) {
					named[name], floor = true, true
				}
			}
		}
	}
	ids = map[string]bool{}
	for name := range named {
		if op := ds.Names[name]; op != nil && op.Q == nil {
			ids[op.Stamp.ID] = true
		}
	}
	if len(ids) > 0 || floor || plan == nil {
		return ids, floor
	}
	floor = len(implied) > 0
	for _, a := range plan.Actions {
		if a.Changes() {
			if op := ds.Names[a.Name]; op != nil && op.Q == nil {
				ids[op.Stamp.ID] = true
			}
		}
	}
	return ids, floor
}

// mentions reports whether msg names name as a whole word.
func mentions(msg, name string) bool {
	word := func(c byte) bool {
		return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for i := 0; ; {
		j := strings.Index(msg[i:], name)
		if j < 0 {
			return false
		}
		j += i
		end := j + len(name)
		if (j == 0 || !word(msg[j-1])) && (end == len(msg) || !word(msg[end])) {
			return true
		}
		i = j + 1
	}
}

// write performs the plan's request with its strategy and returns the
// strategy it used. A write that could collapse a gradual deployment is
// held instead (a *holdError, see version.go); a settings PATCH refused
// because the latest version is not deployed becomes a version.
func (r *Reconciler) write(ctx context.Context, ref cfapi.ScriptRef, plan *planner.Plan, lv *liveState, ann map[string]string) (planner.Strategy, error) {
	if r.splitMatters(ref) {
		if err := r.guardSplit(ctx, ref, lv); err != nil {
			return "", err
		}
	}
	switch plan.Strategy {
	case planner.StrategySettings:
		if r.typeNameRefused.Load() && hasTypeName(plan.Request.Bindings) {
			return r.settingsAsVersion(ctx, ref, plan, lv, ann, nil) // fallback.go
		}
		_, err := r.api.PatchSettings(ctx, ref, cfapi.SettingsPatch{Bindings: plan.Request.Bindings})
		if isNotDeployed(err) {
			return r.versionInstead(ctx, ref, plan, lv, ann, err)
		}
		if cfapi.IsTypeNameRefused(err, plan.Request.Bindings) {
			return r.settingsAsVersion(ctx, ref, plan, lv, ann, err)
		}
		return plan.Strategy, classify(err)
	case planner.StrategyScript:
		content, err := r.api.GetScriptContent(ctx, ref)
		if err != nil {
			return "", classify(err)
		}
		up, err := uploadFor(plan, lv.settings, content, false)
		if err != nil {
			return "", terminal(event.ReasonInvalidDesired, err)
		}
		_, err = r.api.UploadScript(ctx, ref, up)
		return plan.Strategy, classify(err)
	case planner.StrategyVersion:
		return plan.Strategy, r.writeVersion(ctx, ref, plan, lv, ann)
	}
	return "", terminal(event.ReasonInvalidDesired, fmt.Errorf("plan has unknown strategy %q", plan.Strategy))
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
