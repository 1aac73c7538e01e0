package planner

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi"
)

// ActionKind is what a plan does with one binding name.
type ActionKind string

// Action kinds.
const (
	ActionAdd     ActionKind = "add"     // the binding is created
	ActionUpdate  ActionKind = "update"  // the binding is rewritten (value or type)
	ActionRemove  ActionKind = "remove"  // the binding is deleted
	ActionKeep    ActionKind = "keep"    // the binding stays as it is, and it is the reconciler's
	ActionUnowned ActionKind = "unowned" // the binding stays as it is: someone else created it
)

// Reasons that actions carry.
const (
	ReasonMissing      = "missing from live"                    // add of a binding the reconciler applied before
	ReasonTypeChanged  = "type changed"                         // update to another type
	ReasonValueChanged = "value changed"                        // update of a non-secret value
	ReasonNewSecret    = "new secret value"                     // secret whose fingerprint differs
	ReasonNotApplied   = "not applied by the reconciler before" // secret that no record vouches for
	ReasonNamedRemove  = "named in remove"                      // remove by a patch's remove list
	ReasonNotDesired   = "no longer desired"                    // remove of an owned binding by a replace
	ReasonUnowned      = "created outside the reconciler"       // left alone
	ReasonInherited    = "inherited"                            // keep by a desired inherit binding
)

// Action is the plan for one binding name.
//
// Before and After are empty in Plan.Actions, so that planning stays cheap;
// Plan.Detailed fills them, and MarshalJSON and Render show them. Neither
// ever holds a write-only value: those read "(sensitive)".
type Action struct {
	Kind ActionKind `json:"action"`
	Name string     `json:"name"`
	// Type is the binding's type after the action (the live type for
	// remove, keep and unowned).
	Type string `json:"type"`
	// OldType is the live type when an update changes the type.
	OldType   string          `json:"old_type,omitempty"`
	Before    json.RawMessage `json:"before,omitempty"` // live binding, redacted
	After     json.RawMessage `json:"after,omitempty"`  // desired binding, redacted
	Sensitive bool            `json:"sensitive,omitempty"`
	rename    bool            // desired is an inherit with old_name that is carried out
	Reason    string          `json:"reason,omitempty"`

	live, desired *cfapi.Binding // nil when absent; they point into the Plan's inputs
}

// changes reports whether the action writes.
func (a *Action) changes() bool {
	return a.Kind == ActionAdd || a.Kind == ActionUpdate || a.Kind == ActionRemove
}

// Plan is the outcome of Planner.Plan: what happens to each binding, and the
// one write that does it.
type Plan struct {
	// Strategy is the write to make; StrategyNone when there is nothing to
	// write.
	Strategy Strategy
	// Actions has one entry per binding name that is desired, live or both
	// (a name in Remove that is not live gets none), sorted by name.
	Actions []Action
	// Request is the complete write (zero when Strategy is StrategyNone).
	Request Request
	// Applied is the last-applied record to store once the write has
	// succeeded (or, for a no-op, when it differs from the stored one).
	Applied LastApplied
	// NeedsParts lists, sorted, the multipart parts that the script or
	// version upload must carry: the "part" of every wasm_module, text_blob
	// and data_blob binding sent in full.
	NeedsParts []string
}

// NoOp reports whether the plan writes nothing.
func (p *Plan) NoOp() bool { return p.Strategy == StrategyNone }

// Request is the write a plan implies.
type Request struct {
	// Bindings is the full binding set to send, sorted by name. Added and
	// updated bindings are complete (secrets with their text). With
	// StrategySettings every other binding that stays is {type, name},
	// which keeps its value; with StrategyScript and StrategyVersion it is
	// {"type":"inherit","name":…}, except write-only bindings that
	// KeepBindings carries over.
	Bindings []cfapi.Binding
	// KeepBindings lists, for StrategyScript and StrategyVersion, the
	// binding types to keep from the previous version (the metadata's
	// keep_bindings): secret_text and secret_key, each unless a binding of
	// that type is removed or changes type.
	KeepBindings []string
}

// IsZero reports whether r is the zero Request (a no-op plan's).
func (r Request) IsZero() bool { return r.Bindings == nil && r.KeepBindings == nil }

// SettingsJSON returns the JSON of the settings PATCH's "settings" part,
// {"bindings":[...]}, with deterministic bytes. It contains secret values:
// send it, never log it.
func (r Request) SettingsJSON() []byte {
	n := len(`{"bindings":[]}`)
	for _, b := range r.Bindings {
		n += len(b.Raw()) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, `{"bindings":[`...)
	for i, b := range r.Bindings {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b.Raw()...)
	}
	return append(out, "]}"...)
}

// MarshalJSON returns the request with write-only values replaced by
// "(sensitive)", so that logging a Request never leaks a secret. The bytes
// to send are SettingsJSON, or the Bindings themselves.
func (r Request) MarshalJSON() ([]byte, error) {
	bs := make([]json.RawMessage, len(r.Bindings))
	for i := range r.Bindings {
		bs[i] = redact(&r.Bindings[i])
	}
	return json.Marshal(struct {
		Bindings     []json.RawMessage `json:"bindings"`
		KeepBindings []string          `json:"keep_bindings,omitempty"`
	}{bs, r.KeepBindings})
}

// String lists the request's bindings by type and name, without values.
func (r Request) String() string {
	var sb strings.Builder
	sb.WriteString("Request{bindings: [")
	for i, b := range r.Bindings {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s %s", b.Type(), b.Name())
	}
	sb.WriteString("]")
	if len(r.KeepBindings) > 0 {
		fmt.Fprintf(&sb, ", keep_bindings: %v", r.KeepBindings)
	}
	sb.WriteString("}")
	return sb.String()
}

// Plan computes the actions for desired state d against the live bindings
// (as GET returns them) and the last-applied record, and the one request
// that carries them out. It validates d as Validate does; an invalid d, an
// inherit of a binding that is not live, a settings strategy for a change
// that needs a script upload, or two live bindings of one name give an
// error, which is permanent. Plan never panics, and equal inputs give equal
// plans. See the package documentation for the rules.
//
// The plan refers to the bindings of d.Bindings and live (Bindings are
// immutable, but the slices are the caller's): do not modify those slices
// while the plan is in use.
func (p *Planner) Plan(d Desired, live []cfapi.Binding, last LastApplied) (*Plan, error) {
	ds := sortedByName(d.Bindings)
	rm := sortedNames(d.Remove)
	renames, err := p.check(d, ds, rm)
	if err != nil {
		return nil, err
	}
	requested, _ := ParseStrategy(string(d.Strategy))
	ls := sortedByName(live)
	for k := range ls.len() {
		if b := ls.at(k); b.IsZero() {
			return nil, &Error{Msg: "a live binding is empty"}
		} else if k > 0 && ls.name(k-1) == b.Name() {
			return nil, &Error{Name: b.Name(), Type: b.Type(), Field: "name", Msg: "two live bindings have this name"}
		}
	}

	st := p.getState()
	defer p.putState(st)
	slots := mergeNames(ds, ls, rm)
	pl := &Plan{Actions: make([]Action, 0, len(slots))}
	pl.Applied.Bindings = make(map[string]Applied, len(slots))
	// Fingerprints are written to one buffer, which becomes one string
	// once all are known; pending holds the records that wait for it.
	fpBuf := make([]byte, 0, FingerprintLen*min(ds.len(), 16))
	type pendingRecord struct {
		name, typ string
		off       int
	}
	pending := make([]pendingRecord, 0, 8)
	var (
		nChanges   int
		needScript = -1 // first added or updated binding that only a script upload can write
	)
	for _, sl := range slots {
		var db, lb *cfapi.Binding
		var name string
		if sl.d >= 0 {
			db = ds.at(int(sl.d))
			name = db.Name()
		}
		if sl.l >= 0 {
			lb = ls.at(int(sl.l))
			name = lb.Name()
		}
		removed := sl.r >= 0
		if removed {
			name = rm[sl.r]
		}
		rec, recorded := last.Bindings[name]

		// The record to store for name: keep (an existing record), or the
		// type and the fingerprint at fpOff in fpBuf.
		var (
			keepRec bool
			recType string
			fpOff   = -1
		)
		// The action is built in place; a name without one is popped.
		pl.Actions = append(pl.Actions, Action{Name: name, live: lb, desired: db})
		a := &pl.Actions[len(pl.Actions)-1]
		switch {
		case removed: // Validate guarantees db == nil
			if lb == nil {
				pl.Actions = pl.Actions[:len(pl.Actions)-1]
				continue // nothing to remove, nothing to show
			}
			a.Kind, a.Type, a.Reason = ActionRemove, lb.Type(), ReasonNamedRemove

		case db != nil && db.Type() == cfapi.TypeInherit:
			if r := renameTo(renames, name); r != nil {
				if src := ls.find(r.from); src != nil {
					a.Kind, a.Type, a.Reason, a.rename = ActionAdd, src.Type(), "renamed from "+r.from, true
					if lb != nil {
						a.Kind = ActionUpdate
						if lb.Type() != src.Type() {
							a.OldType = lb.Type()
						}
					}
					recType, fpOff = src.Type(), len(fpBuf)
					fpBuf = st.appendFP(fpBuf, *src, name)
					break
				}
				// The source is gone: the rename has been carried out if
				// the new name is live.
			}
			if lb == nil {
				return nil, inheritError(db, renameTo(renames, name))
			}
			a.Kind, a.Type, a.Reason = ActionKeep, lb.Type(), ReasonInherited
			if recorded && rec.Type == lb.Type() {
				keepRec = true
			} else {
				recType, fpOff = lb.Type(), len(fpBuf)
				fpBuf = st.appendFP(fpBuf, *lb, "")
			}

		case db != nil:
			a.Type = db.Type()
			switch {
			case lb == nil:
				a.Kind = ActionAdd
				if recorded {
					a.Reason = ReasonMissing
				}
			case lb.Type() != db.Type():
				a.Kind, a.OldType, a.Reason = ActionUpdate, lb.Type(), ReasonTypeChanged
			case db.WriteOnly():
				// GET never shows the value: the record's fingerprint
				// decides.
				fpOff = len(fpBuf)
				fpBuf = st.appendFP(fpBuf, *db, "")
				switch {
				case !recorded:
					a.Kind, a.Reason = ActionUpdate, ReasonNotApplied
				case rec.Type != db.Type() || rec.Fingerprint != string(fpBuf[fpOff:]):
					a.Kind, a.Reason = ActionUpdate, ReasonNewSecret
				default:
					a.Kind = ActionKeep
				}
			case db.Matches(*lb):
				a.Kind = ActionKeep
			default:
				a.Kind, a.Reason = ActionUpdate, ReasonValueChanged
			}
			switch {
			case a.Kind == ActionKeep && recorded && rec.Type == a.Type:
				// Nothing is written: the record of the last write stays
				// (for a secret it holds this very fingerprint).
				keepRec = true
				if fpOff >= 0 {
					fpBuf, fpOff = fpBuf[:fpOff], -1
				}
			case fpOff < 0:
				recType, fpOff = db.Type(), len(fpBuf)
				fpBuf = st.appendFP(fpBuf, *db, "")
			default:
				recType = db.Type()
			}

		case lb != nil:
			a.Type = lb.Type()
			owned := recorded && rec.Type == lb.Type()
			if r := renameFrom(renames, name); r != nil {
				// A desired inherit carries this binding over under a new
				// name: the rename is the explicit instruction to drop it.
				a.Kind, a.Reason = ActionRemove, "renamed to "+r.to
				break
			}
			switch {
			case owned && d.Exclusive:
				a.Kind, a.Reason = ActionRemove, ReasonNotDesired
			case owned:
				a.Kind, keepRec = ActionKeep, true
			default:
				a.Kind, a.Reason = ActionUnowned, ReasonUnowned
			}

		default:
			pl.Actions = pl.Actions[:len(pl.Actions)-1]
			continue
		}
		switch {
		case keepRec:
			pl.Applied.Bindings[name] = rec
		case fpOff >= 0:
			pending = append(pending, pendingRecord{name, recType, fpOff})
		}
		a.Sensitive = cfapi.IsWriteOnlyType(a.Type) || cfapi.IsWriteOnlyType(a.OldType) ||
			(lb != nil && lb.WriteOnly()) || (db != nil && db.WriteOnly())
		if a.changes() {
			nChanges++
		}
		if needScript < 0 && (a.Kind == ActionAdd || a.Kind == ActionUpdate) && (a.rename || db.InPart()) {
			needScript = len(pl.Actions) - 1
		}
	}
	if len(fpBuf) > 0 {
		fps := string(fpBuf)
		for _, r := range pending {
			pl.Applied.Bindings[r.name] = Applied{Type: r.typ, Fingerprint: fps[r.off : r.off+FingerprintLen]}
		}
	}

	if nChanges == 0 {
		return pl, nil
	}
	switch requested {
	case StrategyAuto:
		pl.Strategy = StrategySettings
		if needScript >= 0 {
			pl.Strategy = StrategyScript
		}
	case StrategySettings:
		if needScript >= 0 {
			a := &pl.Actions[needScript]
			what := "a binding of type " + a.desired.Type()
			if a.rename {
				what = "a rename (inherit with old_name)"
			}
			return nil, &Error{Name: a.Name, Type: a.desired.Type(),
				Msg: what + " cannot be written by a settings PATCH; use strategy script"}
		}
		pl.Strategy = StrategySettings
	default:
		pl.Strategy = requested
	}
	pl.Request, pl.NeedsParts = buildRequest(pl.Strategy, pl.Actions)
	return pl, nil
}

// slot is one name of the merge of the sorted desired, live and remove
// lists: the positions where it occurs, -1 where it does not.
type slot struct{ d, l, r int32 }

// mergeNames merges the three sorted lists into one slot per distinct name,
// in name order.
func mergeNames(ds, ls byName, rm []string) []slot {
	out := make([]slot, 0, ds.len()+ls.len()+len(rm))
	i, j, k := 0, 0, 0
	for i < ds.len() || j < ls.len() || k < len(rm) {
		// The smallest name at the heads of the lists.
		var name string
		have := false
		if i < ds.len() {
			name, have = ds.names[i], true
		}
		if j < ls.len() && (!have || ls.names[j] < name) {
			name, have = ls.names[j], true
		}
		if k < len(rm) && (!have || rm[k] < name) {
			name = rm[k]
		}
		sl := slot{-1, -1, -1}
		if i < ds.len() && ds.names[i] == name {
			sl.d = int32(i)
			i++
		}
		if j < ls.len() && ls.names[j] == name {
			sl.l = int32(j)
			j++
		}
		if k < len(rm) && rm[k] == name {
			sl.r = int32(k)
			k++
		}
		out = append(out, sl)
	}
	return out
}

// buildRequest builds the request of a writing plan from its actions, which
// are sorted by name.
func buildRequest(s Strategy, actions []Action) (Request, []string) {
	var req Request
	keep := [2]bool{true, true} // by cfapi.WriteOnlyTypes() order: secret_text, secret_key
	settings := s == StrategySettings
	if !settings {
		for x := range actions {
			a := &actions[x]
			gone := ""
			switch {
			case a.Kind == ActionRemove:
				gone = a.Type
			case a.Kind == ActionUpdate && a.OldType != "":
				gone = a.OldType
			}
			switch gone {
			case cfapi.TypeSecretText:
				keep[0] = false
			case cfapi.TypeSecretKey:
				keep[1] = false
			}
		}
		for t, typ := range cfapi.WriteOnlyTypes() {
			if keep[t] {
				req.KeepBindings = append(req.KeepBindings, typ)
			}
		}
	}
	kept := func(typ string) bool {
		switch typ {
		case cfapi.TypeSecretText:
			return keep[0]
		case cfapi.TypeSecretKey:
			return keep[1]
		}
		return false
	}

	refBytes, n := 0, 0
	for x := range actions {
		switch a := &actions[x]; a.Kind {
		case ActionKeep, ActionUnowned:
			refBytes += cfapi.RefSize(a.Type, a.Name)
			n++
		case ActionAdd, ActionUpdate:
			n++
		}
	}
	var rb cfapi.RefBuilder
	rb.Grow(refBytes)
	var parts []string
	req.Bindings = make([]cfapi.Binding, 0, n)
	for x := range actions {
		a := &actions[x]
		switch a.Kind {
		case ActionAdd, ActionUpdate:
			req.Bindings = append(req.Bindings, *a.desired)
			if a.desired.InPart() {
				if part, ok := a.desired.String("part"); ok {
					parts = append(parts, part)
				}
			}
		case ActionKeep, ActionUnowned:
			switch {
			case settings:
				req.Bindings = append(req.Bindings, rb.Ref(a.Type, a.Name))
			case !kept(a.Type):
				req.Bindings = append(req.Bindings, rb.Inherit(a.Name))
			}
		}
	}
	if len(parts) > 0 {
		slices.Sort(parts)
		parts = slices.Compact(parts)
	}
	return req, parts
}

func renameTo(renames []rename, to string) *rename {
	for x := range renames {
		if renames[x].to == to {
			return &renames[x]
		}
	}
	return nil
}

func renameFrom(renames []rename, from string) *rename {
	for x := range renames {
		if renames[x].from == from {
			return &renames[x]
		}
	}
	return nil
}

// inheritError is the error for a desired inherit binding with nothing live
// to inherit (the API's 10057 under bindings_inherit=strict).
func inheritError(b *cfapi.Binding, r *rename) error {
	if r != nil {
		return &Error{Name: b.Name(), Type: b.Type(), Field: "old_name", Msg: fmt.Sprintf(
			"renames %q, but the script has no binding named %q or %q", r.from, r.from, r.to)}
	}
	return &Error{Name: b.Name(), Type: b.Type(), Field: "name",
		Msg: "inherits a binding that the script does not have"}
}
