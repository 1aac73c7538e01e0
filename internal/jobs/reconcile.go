package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
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
	// RequeueAfter, when positive, says the script was not reconciled
	// (another replica holds it, or a read was behind) and should be tried
	// again after it; no event is settled.
	RequeueAfter time.Duration
	// Revision is the desired-state revision the reconcile read: held
	// events folded at or below it are settled.
	Revision uint64
	// Wrote reports a write; Strategy is its strategy.
	Wrote    bool
	Strategy planner.Strategy
	Plan     *planner.Plan
	// State is the desired state read (to tell quarantined events), and
	// Record the last-applied record after the reconcile.
	State  *event.DesiredState
	Record *state.AppliedRecord
	// Held, with RequeueAfter, says the script was not written on purpose
	// and why (a metrics.Hold* reason, see version.go): its events stay
	// held, neither acknowledged nor dead-lettered.
	Held string
}

// outcomeFor returns how event h ends after the reconcile res succeeded:
// dead-lettered when all of its operations are quarantined, applied or
// no-op otherwise.
func (res Result) outcomeFor(h *heldEvent) outcome {
	if res.State != nil && h.id != "" {
		if q := res.State.Quarantined(h.id); q != nil {
			return deadLetterOutcome(q.Reason, errors.New(q.Error))
		}
	}
	wrote := res.Wrote
	if h.lane == laneBackfill && res.Record != nil {
		// Changed when its own operations were written, by this reconcile
		// or by an earlier one (before a crash and a resume).
		wrote = res.Record.Wrote(h.id)
	}
	if res.Wrote {
		return ackOutcome(outcomeApplied, wrote)
	}
	return ackOutcome(outcomeNoop, wrote)
}

// process reconciles one script and settles its held events: the one
// switch from a reconcile's (Result, error) to what happens to them. (It
// is kept whole, a little over the usual length, so that every outcome
// reads in one place.)
func (r *Runner) process(ctx context.Context, key string, l lane) {
	if wait := r.auth.wait(); wait > 0 {
		r.queue.AddAfter(key, l, wait)
		return
	}
	want, modifiedOn, eventID := r.held.snapshot(key)
	log := r.scriptLogger(key, eventID, l)
	ctx = withLogger(ctx, log)
	r.m.InflightReconciles.Inc()
	start := time.Now()
	res, err := r.reconcileSafely(ctx, key, want, modifiedOn, l, log)
	r.m.InflightReconciles.Dec()
	r.m.ReconcileDuration.Observe(time.Since(start).Seconds())

	if err != nil && !isAuthFailure(err) || err == nil && res.RequeueAfter > 0 {
		r.auth.inconclusive()
	}
	var term *TerminalError
	switch {
	case err == nil && res.RequeueAfter > 0:
		result := metrics.ResultLeaseBusy
		if res.Held != "" {
			result = metrics.ResultHeld
			r.m.ScriptsHeld.WithLabelValues(res.Held).Inc()
		}
		r.m.ReconcileTotal.WithLabelValues(result).Inc()
		r.queue.AddAfter(key, l, res.RequeueAfter)
	case err == nil:
		result := metrics.ResultNoop
		if res.Wrote {
			result = metrics.ResultApplied
		}
		r.m.ReconcileTotal.WithLabelValues(result).Inc()
		r.m.LastSuccess.SetToCurrentTime()
		r.auth.ok()
		r.clearFailures(key)
		hs := r.held.take(key, res.Revision)
		for _, h := range hs {
			r.settle(ctx, h, res.outcomeFor(h))
		}
		level := zap.DebugLevel // a no-op is routine; a write is news
		if res.Wrote {
			level = zap.InfoLevel
		}
		if ce := log.Check(level, "reconciled"); ce != nil {
			ce.Write(zap.String("result", result), zap.String("strategy", string(res.Strategy)),
				zap.Int("events_settled", len(hs)), zap.Duration("took", time.Since(start)))
		}
	case ctx.Err() != nil:
		// Shutting down: Run hands the held events back.
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
	case isAuthFailure(err):
		// The credentials are rejected: no event is to blame. Stop taking
		// work (readiness fails), keep the events, try again later.
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
		if r.auth.fail(err) {
			log.Error("the Cloudflare API rejects the credentials: reconciles are paused, events are kept", zap.Error(err),
				zap.Duration("retry_in", r.auth.wait()))
		}
		r.queue.AddAfter(key, l, r.auth.wait())
	case errors.As(err, &term) && term.Quarantined:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultPermanent).Inc()
		log.Warn("operations quarantined; reconciling the rest", zap.String("reason", string(term.Reason)), zap.Error(err))
		r.queue.Add(key, l)
	case errors.As(err, &term):
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultPermanent).Inc()
		log.Error("reconcile failed permanently", zap.String("reason", string(term.Reason)), zap.Error(err))
		for _, h := range r.held.take(key, want) {
			r.settle(ctx, h, deadLetterOutcome(term.Reason, err))
		}
	default:
		r.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient).Inc()
		log.Warn("reconcile failed, will retry", zap.Error(err))
		hs := r.held.take(key, want)
		for _, h := range hs {
			r.settle(ctx, h, retryOutcome(err))
		}
		if len(hs) == 0 {
			// Nothing to redeliver (a resync, a recovery, or events that
			// another replica holds): retry from the queue with backoff.
			if n := r.addFailure(key); n <= r.cfg.MaxDeliver {
				r.queue.AddAfter(key, l, r.cfg.nakDelay(uint64(n)))
			}
		}
	}
}

// scriptLogger returns the child logger of one reconcile: the script's
// account, namespace and name, its lane, and the newest held event.
func (r *Runner) scriptLogger(key, eventID string, l lane) *zap.Logger {
	fields := []zap.Field{zap.String("script_key", key), zap.Stringer("lane", l)}
	if ref, err := event.ParseScriptKey(key); err == nil {
		fields = append(fields, zap.String("account", ref.AccountID), zap.String("namespace", ref.Namespace), zap.String("script", ref.Script))
	}
	if eventID != "" {
		fields = append(fields, zap.String("event_id", eventID))
	}
	return r.log.With(fields...)
}

type loggerKey struct{}

// withLogger carries a reconcile's logger in its context.
func withLogger(ctx context.Context, log *zap.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// loggerFrom returns the logger carried by ctx, or def.
func loggerFrom(ctx context.Context, def *zap.Logger) *zap.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*zap.Logger); ok {
		return l
	}
	return def
}

// reconcileSafely is reconcile with a panic turned into an error: a bug
// met by one script's data must not kill the process with every other
// event held.
func (r *Runner) reconcileSafely(ctx context.Context, key string, want uint64, modifiedOn string, l lane, log *zap.Logger) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.m.PanicsRecovered.Inc()
			log.Error("reconcile panicked", zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			res, err = Result{}, fmt.Errorf("reconcile panicked: %v", p)
		}
	}()
	return r.reconcile(ctx, key, want, modifiedOn, l)
}

func (r *Runner) addFailure(key string) int {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	r.failures[key]++
	return r.failures[key]
}

func (r *Runner) clearFailures(key string) {
	r.failMu.Lock()
	defer r.failMu.Unlock()
	delete(r.failures, key)
}

// classify turns an API error into a terminal error when retrying cannot
// help; transient errors and auth failures are returned as they are.
func classify(err error) error {
	var apiErr *cfapi.APIError
	if err == nil || !errors.As(err, &apiErr) || apiErr.Retryable() || isAuthFailure(err) {
		return err
	}
	if apiErr.NotFound() {
		return terminal(event.ReasonNotFound, err)
	}
	return terminal(event.ReasonAPIRejected, err)
}

// isAuthFailure reports an API answer that rejects the credentials (HTTP
// 401/403, codes 10000, 9106, 9109): a fault of the system, not of an
// event.
func isAuthFailure(err error) bool { return errors.Is(err, cfapi.ErrAuth) }

// errStaleRead is a desired-state read that returned a revision older than
// a fold this process made (a follower behind its leader).
var errStaleRead = errors.New("desired state read is behind the folds it must cover")

// reconcile converges one script: it takes the script's lease, reads the
// desired state (at least revision want), the last-applied record and the
// live bindings, plans, writes the difference with the planned strategy,
// and records what was applied. Every write happens while the lease is
// provably held.
func (r *Runner) reconcile(ctx context.Context, key string, want uint64, modifiedOn string, l lane) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ReconcileTimeout)
	defer cancel()
	ctx = laneContext(ctx, l)
	ref, err := event.ParseScriptKey(key)
	if err != nil {
		return Result{}, terminal(event.ReasonInvalidDesired, err)
	}
	ls, ok, err := state.AcquireLease(ctx, r.st.Leases(), key, r.cfg.Owner, r.cfg.LeaseTTL)
	if err != nil {
		return Result{}, err
	}
	if !ok {
		return Result{RequeueAfter: 200*time.Millisecond + rand.N(300*time.Millisecond)}, nil
	}
	defer ls.Release()
	ds, rev, err := r.readDesired(ls.Context(), key, want)
	switch {
	case errors.Is(err, errStaleRead):
		return Result{RequeueAfter: 100 * time.Millisecond}, nil
	case errors.Is(err, state.ErrNotFound):
		return Result{}, nil // nothing desired for this script
	case err != nil:
		return Result{}, err
	}
	return r.converge(ls, ref, key, ds, rev, modifiedOn)
}

// readDesired reads the desired state of key, again a few times while the
// revision read is below want. With want > 0 a missing key is a read
// behind too (a follower that has not seen the script's first fold; the
// reconciler never deletes a desired state), not "nothing desired": that
// would leave the held events unsettled with nothing to reconcile them.
func (r *Runner) readDesired(ctx context.Context, key string, want uint64) (*event.DesiredState, uint64, error) {
	for attempt := 0; ; attempt++ {
		ds, rev, err := r.st.LoadDesired(ctx, key)
		notYet := errors.Is(err, state.ErrNotFound) && want > 0
		if !notYet && (err != nil || rev >= want) {
			return ds, rev, err
		}
		if attempt == 3 {
			return nil, 0, fmt.Errorf("%w: read revision %d, want %d", errStaleRead, rev, want)
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(time.Duration(10<<attempt) * time.Millisecond):
		}
	}
}

// converge plans state against the live bindings and writes the
// difference, holding lease ls.
func (r *Runner) converge(ls *state.Lease, ref cfapi.ScriptRef, key string, ds *event.DesiredState, rev uint64, modifiedOn string) (Result, error) {
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
	res := Result{Revision: rev, Plan: plan, State: ds, Record: next}
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
	next.Strategy, next.AppliedAt, next.ModifiedOn = string(used), time.Now().UTC(), ""
	next.WrittenBy = writtenBy(rec, ds, plan)
	if _, err := r.st.SaveApplied(context.WithoutCancel(ctx), key, next, recRev); err != nil {
		return Result{}, err
	}
	if ce := loggerFrom(ctx, r.log).Check(zap.DebugLevel, "plan applied"); ce != nil {
		ce.Write(zap.Stringer("plan", plan))
	}
	res.Wrote, res.Strategy = true, used
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
		if op := ds.Names[n]; op != nil {
			set(n, s)
		}
	}
	changed := changedNames(ds, plan)
	for n, s := range rec.Pending {
		if op := ds.Names[n]; op != nil && op.Stamp == s {
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

// changedNames returns the desired names plan writes, with the stamps of
// their operations.
func changedNames(ds *event.DesiredState, plan *planner.Plan) map[string]event.Stamp {
	if plan == nil {
		return nil
	}
	out := map[string]event.Stamp{}
	for _, a := range plan.Actions {
		if a.Kind == planner.ActionAdd || a.Kind == planner.ActionUpdate || a.Kind == planner.ActionRemove {
			if op := ds.Names[a.Name]; op != nil {
				out[a.Name] = op.Stamp
			}
		}
	}
	return out
}

// markPending records in the last-applied record, before a write, the
// operations the write carries out, and returns the record's revision.
func (r *Runner) markPending(ctx context.Context, key string, rec *state.AppliedRecord, recRev uint64, ds *event.DesiredState, plan *planner.Plan) (uint64, error) {
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
func (r *Runner) blame(ctx context.Context, key string, ds *event.DesiredState, plan *planner.Plan, err error) error {
	var term *TerminalError
	if !errors.As(err, &term) || term.Reason == event.ReasonNotFound {
		return err
	}
	ids := culprits(ds, plan, err)
	if len(ids) == 0 {
		return err
	}
	q := event.Quarantine{Reason: term.Reason, Error: cfapi.Truncate(err.Error(), 1024)}
	if _, qerr := r.st.UpdateDesired(context.WithoutCancel(ctx), key, func(s *event.DesiredState) bool {
		return s.Quarantine(ids, q) > 0
	}); qerr != nil {
		loggerFrom(ctx, r.log).Warn("quarantining failed operations", zap.Error(qerr))
		return err
	}
	term.Quarantined = true
	return term
}

// culprits returns the ids of the events whose operations caused err: the
// operations on the bindings the error names, or, when it names none of
// them, every operation the plan writes.
func culprits(ds *event.DesiredState, plan *planner.Plan, err error) map[string]bool {
	named := map[string]bool{}
	var pe *planner.Error
	var ve *cfapi.ValidationError
	var ae *cfapi.APIError
	switch {
	case errors.As(err, &pe):
		named[pe.Name] = true
	case errors.As(err, &ve) && ve.Name != "":
		named[ve.Name] = true
	case errors.As(err, &ae):
		for name := range ds.Names {
			for _, d := range ae.Errors {
				if mentions(d.Message, name) {
					named[name] = true
				}
			}
		}
	}
	ids := map[string]bool{}
	for name := range named {
		if op := ds.Names[name]; op != nil && op.Q == nil {
			ids[op.Stamp.ID] = true
		}
	}
	if len(ids) > 0 || plan == nil {
		return ids
	}
	for _, a := range plan.Actions {
		if a.Kind == planner.ActionAdd || a.Kind == planner.ActionUpdate || a.Kind == planner.ActionRemove {
			if op := ds.Names[a.Name]; op != nil && op.Q == nil {
				ids[op.Stamp.ID] = true
			}
		}
	}
	return ids
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
func (r *Runner) write(ctx context.Context, ref cfapi.ScriptRef, plan *planner.Plan, lv *liveState, ann map[string]string) (planner.Strategy, error) {
	if r.splitMatters(ref) {
		if err := r.guardSplit(ctx, ref, lv); err != nil {
			return "", err
		}
	}
	switch plan.Strategy {
	case planner.StrategySettings:
		_, err := r.api.PatchSettings(ctx, ref, cfapi.SettingsPatch{Bindings: plan.Request.Bindings})
		if isNotDeployed(err) {
			return r.versionInstead(ctx, ref, plan, lv, ann, err)
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

// laneContext marks the API calls of a reconcile with its lane, so that
// the budget serves live work first.
func laneContext(ctx context.Context, l lane) context.Context {
	if l == laneBackfill {
		return cfapi.WithPriority(ctx, cfapi.PriorityBackfill)
	}
	return cfapi.WithPriority(ctx, cfapi.PriorityLive)
}
