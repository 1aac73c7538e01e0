package tools

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
)

// DriftAPI is what `reconciler drift` needs of the API: the live settings
// of a script and the listing of a dispatch namespace (cfapi.Client has
// both).
type DriftAPI interface {
	GetSettings(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error)
	EachScript(ctx context.Context, accountID, namespace string, opts cfapi.ListScriptsOptions, fn func(cfapi.ScriptInfo) error) error
}

// DriftScope says which scripts Drift checks: those the reconciler manages
// (a desired state or a last-applied record) in one dispatch namespace of
// one account ("" for ordinary Workers), or only the named Scripts.
type DriftScope struct {
	AccountID string
	Namespace string
	Scripts   []string
}

// States of a script in a drift report.
const (
	DriftInSync    = "in_sync"    // live equals what the reconciler applied and wants
	DriftUnchanged = "unmodified" // not read: modified_on unchanged since a read found it converged
	DriftDrifted   = "drifted"    // live differs from what the reconciler applied or wants
	DriftPending   = "pending"    // live differs, and the desired state is newer than the last write
	DriftGone      = "gone"       // the script is not in its namespace's listing
	DriftUnmanaged = "unmanaged"  // named, but the reconciler holds no state for it
	DriftError     = "error"      // could not be read or planned
)

// DriftChange is one binding whose live value differs from what the
// reconciler applied or wants: the write that would repair it (add,
// update, remove) and why, never a value.
type DriftChange struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	Type   string `json:"type"`
	Reason string `json:"reason,omitempty"`
}

// ScriptDrift is the drift of one script.
type ScriptDrift struct {
	Script  string        `json:"script"` // account.namespace.script
	State   string        `json:"state"`
	Changes []DriftChange `json:"changes,omitempty"`
	Error   string        `json:"error,omitempty"`
}

// Drifted reports whether the script counts as drift (exit code 2).
func (s ScriptDrift) Drifted() bool {
	return s.State == DriftDrifted || s.State == DriftPending || s.State == DriftGone
}

// DriftReport is the outcome of Drift.
type DriftReport struct {
	// Scripts has every script checked, by key.
	Scripts []ScriptDrift `json:"scripts"`
	// Managed counts the scripts in scope the reconciler holds state for.
	Managed int `json:"managed"`
	// Reads counts the live reads made; Listed is true when the
	// namespace listing was used to skip unmodified scripts.
	Reads     int  `json:"reads"`
	Listed    bool `json:"listed"`
	Drifted   int  `json:"drifted"`
	Errors    int  `json:"errors"`
	Unchanged int  `json:"unmodified"`
	// Notes say what could not be used (a listing that failed).
	Notes []string `json:"notes,omitempty"`
}

// Drift finds the scripts in scope whose live bindings differ from what
// the reconciler last applied or wants now. It costs the namespace's list
// pages plus one read per managed script whose listed modified_on moved
// since a read recorded it converged (state.AppliedRecord.ModifiedOn),
// whose desired state is newer than that read, or that has no such mark;
// without a listing (ordinary Workers, or a listing that fails) every
// managed script is read. It writes nothing. The error is for state that
// cannot be read at all; a script that cannot be read is reported in it.
func Drift(ctx context.Context, res *state.Resources, api DriftAPI, p *planner.Planner, scope DriftScope) (*DriftReport, error) {
	if err := cfapi.ValidateAccountID(scope.AccountID); err != nil {
		return nil, err
	}
	store := res.NewStore(state.StoreOptions{})
	desired, err := store.DesiredRevisions(ctx)
	if err != nil {
		return nil, fmt.Errorf("desired states: %w", err)
	}
	marks, err := store.AppliedMarks(ctx)
	if err != nil {
		return nil, fmt.Errorf("last-applied records: %w", err)
	}
	ns := scope.Namespace
	if ns == "" {
		ns = event.NoNamespace
	}
	prefix := scope.AccountID + "." + ns + "."
	managed := func(key string) bool {
		_, d := desired[key]
		_, a := marks[key]
		return d || a
	}
	rep := &DriftReport{Scripts: []ScriptDrift{}}
	var keys []string
	if len(scope.Scripts) > 0 {
		seen := map[string]bool{}
		for _, s := range scope.Scripts {
			ref := cfapi.ScriptRef{AccountID: scope.AccountID, Namespace: scope.Namespace, Script: s}
			if err := ref.Validate(); err != nil {
				return nil, err
			}
			key := event.ScriptKey(ref)
			if seen[key] {
				continue
			}
			seen[key] = true
			if !managed(key) {
				rep.Scripts = append(rep.Scripts, ScriptDrift{Script: key, State: DriftUnmanaged})
				continue
			}
			keys = append(keys, key)
		}
	} else {
		for key := range desired {
			if strings.HasPrefix(key, prefix) {
				keys = append(keys, key)
			}
		}
		for key := range marks {
			if _, ok := desired[key]; !ok && strings.HasPrefix(key, prefix) {
				keys = append(keys, key)
			}
		}
	}
	sort.Strings(keys)
	rep.Managed = len(keys)

	var listed map[string]string // key → modified_on; nil: not listed
	if scope.Namespace != "" && len(keys) > 0 {
		listed = map[string]string{}
		err := api.EachScript(ctx, scope.AccountID, scope.Namespace, cfapi.ListScriptsOptions{Limit: cfapi.MaxListLimit}, func(s cfapi.ScriptInfo) error {
			listed[prefix+s.ID] = s.ModifiedOn
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rep.Notes = append(rep.Notes, fmt.Sprintf("listing namespace %s failed, every managed script is read: %v", scope.Namespace, err))
			listed = nil
		}
	}
	rep.Listed = listed != nil

	for _, key := range keys {
		sd := ScriptDrift{Script: key}
		if listed != nil {
			modified, ok := listed[key]
			mark, marked := marks[key]
			switch {
			case !ok:
				sd.State = DriftGone
			case marked && mark.ModifiedOn != "" && mark.ModifiedOn == modified && mark.DesiredRev >= desired[key]:
				sd.State = DriftUnchanged
			}
		}
		if sd.State == "" {
			rep.Reads++
			sd = driftOf(ctx, store, api, p, key)
		}
		switch {
		case sd.Drifted():
			rep.Drifted++
		case sd.State == DriftError:
			rep.Errors++
		case sd.State == DriftUnchanged:
			rep.Unchanged++
		}
		rep.Scripts = append(rep.Scripts, sd)
	}
	sort.Slice(rep.Scripts, func(i, j int) bool { return rep.Scripts[i].Script < rep.Scripts[j].Script })
	return rep, nil
}

// driftOf reads one script's live bindings and compares them with its
// desired state and last-applied record.
func driftOf(ctx context.Context, store *state.Store, api DriftAPI, p *planner.Planner, key string) ScriptDrift {
	sd := ScriptDrift{Script: key}
	fail := func(format string, args ...any) ScriptDrift {
		sd.State, sd.Error = DriftError, cfapi.Truncate(fmt.Sprintf(format, args...), 512)
		return sd
	}
	ref, err := event.ParseScriptKey(key)
	if err != nil {
		return fail("%v", err)
	}
	ds, drev, err := store.LoadDesired(ctx, key)
	if errors.Is(err, state.ErrNotFound) {
		ds = nil
	} else if err != nil {
		return fail("desired state: %v", err)
	}
	rec, _, err := store.LoadApplied(ctx, key)
	if err != nil {
		return fail("last-applied record: %v", err)
	}
	settings, err := api.GetSettings(ctx, ref)
	if err != nil {
		return fail("reading live bindings: %v", err)
	}
	live := wire.Bindings(settings.Bindings)
	covered := map[string]bool{}
	if ds != nil {
		d, hidden := ds.PlannerInput(rec.Removed)
		last := rec.LastApplied()
		last.Bindings = copyApplied(last.Bindings)
		for _, n := range hidden {
			delete(last.Bindings, n)
		}
		plan, err := p.Plan(d, settings.Bindings, last)
		if err != nil {
			return fail("planning: %v", err)
		}
		for _, a := range plan.Actions {
			if a.Changes() {
				sd.Changes = append(sd.Changes, DriftChange{Name: a.Name, Action: string(a.Kind), Type: a.Type, Reason: a.Reason})
				covered[a.Name] = true
			}
		}
	}
	// What the reconciler wrote and is no longer live as written, when the
	// plan does not already say so (a script with no desired state).
	for _, name := range sortedAppliedNames(rec.Bindings) {
		if covered[name] {
			continue
		}
		a := rec.Bindings[name]
		switch lb, ok := live.ByName(name); {
		case !ok:
			sd.Changes = append(sd.Changes, DriftChange{Name: name, Action: string(planner.ActionAdd), Type: a.Type, Reason: planner.ReasonMissing})
		case lb.Type() != a.Type:
			sd.Changes = append(sd.Changes, DriftChange{Name: name, Action: string(planner.ActionUpdate), Type: a.Type, Reason: planner.ReasonTypeChanged})
		}
	}
	switch {
	case len(sd.Changes) == 0:
		sd.State = DriftInSync
	case ds != nil && rec.DesiredRevision < drev:
		sd.State = DriftPending
	default:
		sd.State = DriftDrifted
	}
	return sd
}

func copyApplied(m map[string]planner.Applied) map[string]planner.Applied {
	out := make(map[string]planner.Applied, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedAppliedNames(m map[string]planner.Applied) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WriteDrift renders a drift report for people: one line per script that
// is not in sync, with the bindings that differ, then a summary.
func WriteDrift(w io.Writer, rep *DriftReport) error {
	var b strings.Builder
	for _, s := range rep.Scripts {
		if s.State == DriftInSync || s.State == DriftUnchanged {
			continue
		}
		fmt.Fprintf(&b, "%-9s %s", s.State, s.Script)
		if s.Error != "" {
			fmt.Fprintf(&b, ": %s", s.Error)
		}
		b.WriteString("\n")
		for _, c := range s.Changes {
			fmt.Fprintf(&b, "  %s %s %s", c.Action, c.Type, c.Name)
			if c.Reason != "" {
				fmt.Fprintf(&b, " (%s)", c.Reason)
			}
			b.WriteString("\n")
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	inSync := rep.Managed - rep.Drifted - rep.Errors
	fmt.Fprintf(&b, "%d of %d managed scripts drifted, %d in sync (%d not read: unmodified since a read found them converged), %d errors; %d live reads\n",
		rep.Drifted, rep.Managed, inSync, rep.Unchanged, rep.Errors, rep.Reads)
	_, err := io.WriteString(w, b.String())
	return err
}
