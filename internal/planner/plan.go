package planner

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
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

	live, desired *wire.Binding // nil when absent; they point into the Plan's inputs
}

// Changes reports whether the action writes (an add, update or remove).
func (a Action) Changes() bool {
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
	// {"type":"inherit","name":…}, except (StrategyScript only) write-only
	// bindings that KeepBindings carries over. StrategyVersion inherits
	// every binding that stays by name, secrets included, so that the
	// caller can pin each entry to one version (cfapi.InheritFrom).
	Bindings []wire.Binding
	// KeepBindings lists, for StrategyScript, the binding types to keep
	// from the previous version (the metadata's keep_bindings): secret_text
	// and secret_key, each unless a binding of that type is removed or
	// changes type. It is empty for StrategyVersion.
	KeepBindings []string
}

// IsZero reports whether r is the zero Request (a no-op plan's).
func (r Request) IsZero() bool { return r.Bindings == nil && r.KeepBindings == nil }

// MarshalJSON returns the request redacted as plans are (see
// wire.RedactJSON: every value of a binding not known to be non-secret
// reads "(sensitive)"), so that logging a Request never leaks a secret. The
// bytes to send are built from Bindings by cfapi (SettingsPatch.JSON for
// StrategySettings, UploadMetadata.JSON otherwise).
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
func (p *Planner) Plan(d Desired, live []wire.Binding, last LastApplied) (*Plan, error) {
	renames, err := validate(d)
	if err != nil {
		return nil, err
	}
	s, err := newPlanning(p, d, live, last, renames)
	if err != nil {
		return nil, err
	}
	pl := &Plan{Actions: make([]Action, 0, len(s.names)), Applied: LastApplied{Bindings: s.applied}}
	for _, name := range s.names {
		a, ok, err := s.action(name)
		if err != nil {
			return nil, err
		}
		if ok {
			pl.Actions = append(pl.Actions, a)
		}
	}
	if !slices.ContainsFunc(pl.Actions, Action.Changes) {
		return pl, nil
	}
	requested, _ := ParseStrategy(string(d.Strategy))
	if pl.Strategy, err = chooseStrategy(requested, pl.Actions); err != nil {
		return nil, err
	}
	pl.Request, pl.NeedsParts = buildRequest(pl.Strategy, pl.Actions)
	return pl, nil
}

// planning holds the inputs of one Plan call, by name, and the
// last-applied record it builds.
type planning struct {
	p         *Planner
	exclusive bool
	slots     map[string]slot
	names     []string // the keys of slots, sorted
	renames   []rename
	last      map[string]Applied
	applied   map[string]Applied // the record to store after the write
}

// slot is what the inputs hold for one name.
type slot struct {
	desired, live *wire.Binding // nil when absent
	removed       bool          // named in Desired.Remove
}

// newPlanning indexes valid desired state and the live bindings by name.
// An empty live binding, or two live bindings of one name, is an error.
func newPlanning(p *Planner, d Desired, live []wire.Binding, last LastApplied, renames []rename) (*planning, error) {
	if slices.ContainsFunc(live, wire.Binding.IsZero) {
		return nil, &Error{Msg: "a live binding is empty"}
	}
	slots := make(map[string]slot, len(d.Bindings)+len(live))
	for i := range d.Bindings {
		slots[d.Bindings[i].Name()] = slot{desired: &d.Bindings[i]}
	}
	for i := range live {
		sl := slots[live[i].Name()]
		if sl.live != nil {
			return nil, liveDuplicateError(live)
		}
		sl.live = &live[i]
		slots[live[i].Name()] = sl
	}
	for _, name := range d.Remove {
		sl := slots[name]
		sl.removed = true
		slots[name] = sl
	}
	names := make([]string, 0, len(slots))
	for name := range slots {
		names = append(names, name)
	}
	slices.Sort(names)
	return &planning{p: p, exclusive: d.Exclusive, slots: slots, names: names,
		renames: renames, last: last.Bindings, applied: make(map[string]Applied, len(slots))}, nil
}

// liveDuplicateError is the error for two live bindings of one name (the
// first such name in name order).
func liveDuplicateError(live []wire.Binding) error {
	name, _, last := firstDuplicate(live)
	return &Error{Name: name, Type: live[last].Type(), Field: "name", Msg: "two live bindings have this name"}
}

// action plans one name, with one helper per case. ok is false for a name
// that gets no action (a removed name that is not live).
func (s *planning) action(name string) (a Action, ok bool, err error) {
	sl := s.slots[name]
	db, lb := sl.desired, sl.live
	switch {
	case sl.removed: // validate guarantees db == nil
		if lb == nil {
			return Action{}, false, nil // nothing to remove, nothing to show
		}
		a = removedAction(lb)
	case db != nil && db.Type() == wire.TypeInherit:
		if a, err = s.inherited(name, db, lb); err != nil {
			return Action{}, false, err
		}
	case db != nil:
		a = s.upsert(name, db, lb)
	default:
		a = s.liveOnly(name, lb)
	}
	a.Name, a.live, a.desired = name, lb, db
	a.Sensitive = wire.IsWriteOnlyType(a.Type) || wire.IsWriteOnlyType(a.OldType) ||
		(lb != nil && lb.WriteOnly()) || (db != nil && db.WriteOnly())
	return a, true, nil
}

// removedAction plans a live binding named in Desired.Remove: it goes,
// whoever created it, and leaves the record.
func removedAction(lb *wire.Binding) Action {
	return Action{Kind: ActionRemove, Type: lb.Type(), Reason: ReasonNamedRemove}
}

// inherited plans a desired inherit binding. While the binding it renames
// (old_name) is live, that binding is written under the new name: added, or
// updated over what holds the name now. Otherwise the live binding of the
// name is kept, and there must be one.
func (s *planning) inherited(name string, db, lb *wire.Binding) (Action, error) {
	r := s.renameTo(name)
	if r != nil && !s.renamed(r, lb) {
		if src := s.slots[r.from].live; src != nil {
			a := Action{Kind: ActionAdd, Type: src.Type(), Reason: "renamed from " + r.from, rename: true}
			if lb != nil {
				a.Kind = ActionUpdate
				if lb.Type() != src.Type() {
					a.OldType = lb.Type()
				}
			}
			s.recordWrite(name, src.WithName(name))
			rec := s.applied[name]
			rec.RenamedFrom = r.from
			s.applied[name] = rec
			return a, nil
		}
		// The source is gone: the rename has been carried out if the new
		// name is live.
	}
	if lb == nil {
		return Action{}, inheritError(db, r)
	}
	if s.recordedAs(name, lb.Type()) {
		s.keepRecord(name)
	} else {
		s.recordWrite(name, *lb)
	}
	return Action{Kind: ActionKeep, Type: lb.Type(), Reason: ReasonInherited}, nil
}

// upsert plans a desired binding other than inherit: added when it is not
// live, updated when the live one has another type or value, else kept. GET
// never shows a secret's value, so for a secret the record decides: it is
// kept only when the record holds its type and the fingerprint of the
// desired value.
func (s *planning) upsert(name string, db, lb *wire.Binding) Action {
	a := Action{Type: db.Type()}
	rec, recorded := s.last[name]
	fp := "" // the desired value's fingerprint, once computed
	switch {
	case lb == nil:
		a.Kind = ActionAdd
		if recorded {
			a.Reason = ReasonMissing
		}
	case lb.Type() != db.Type():
		a.Kind, a.OldType, a.Reason = ActionUpdate, lb.Type(), ReasonTypeChanged
	case db.WriteOnly():
		fp = s.p.Fingerprint(*db)
		switch {
		case !recorded:
			a.Kind, a.Reason = ActionUpdate, ReasonNotApplied
		case rec.Type != db.Type() || rec.Fingerprint != fp:
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
	case a.Kind == ActionKeep && s.recordedAs(name, a.Type):
		// Nothing is written: the record of the last write stays (for a
		// secret it holds this very fingerprint).
		s.keepRecord(name)
	case fp != "":
		s.applied[name] = Applied{Type: db.Type(), Fingerprint: fp}
	default:
		s.recordWrite(name, *db)
	}
	return a
}

// liveOnly plans a live binding that is neither desired nor removed: it
// goes when a desired inherit renames it, or when it is owned and a replace
// was folded (Exclusive); an owned one is kept with its record; one that
// someone else created is left alone.
func (s *planning) liveOnly(name string, lb *wire.Binding) Action {
	a := Action{Type: lb.Type()}
	owned := s.recordedAs(name, lb.Type())
	switch r := s.renameFrom(name); {
	case r != nil && !s.renamed(r, s.slots[r.to].live):
		// A desired inherit carries this binding over under a new name:
		// the rename is the explicit instruction to drop it.
		a.Kind, a.Reason = ActionRemove, "renamed to "+r.to
	case owned && s.exclusive:
		a.Kind, a.Reason = ActionRemove, ReasonNotDesired
	case owned:
		a.Kind = ActionKeep
		s.keepRecord(name)
	default:
		a.Kind, a.Reason = ActionUnowned, ReasonUnowned
	}
	return a
}

// renamed reports whether rename r has been carried out: the binding of
// its new name is live (lb) and the record says a rename from the same old
// name wrote it.
func (s *planning) renamed(r *rename, lb *wire.Binding) bool {
	rec, ok := s.last[r.to]
	return ok && lb != nil && rec.RenamedFrom == r.from && rec.Type == lb.Type()
}

// recordedAs reports whether the old record lists name with type typ.
func (s *planning) recordedAs(name, typ string) bool {
	rec, ok := s.last[name]
	return ok && rec.Type == typ
}

// keepRecord carries the old record of name over: nothing is written.
func (s *planning) keepRecord(name string) { s.applied[name] = s.last[name] }

// recordWrite records, under name, the type and value fingerprint of b, the
// binding that the write leaves under that name.
func (s *planning) recordWrite(name string, b wire.Binding) {
	s.applied[name] = Applied{Type: b.Type(), Fingerprint: s.p.Fingerprint(b)}
}

func (s *planning) renameTo(to string) *rename {
	i := slices.IndexFunc(s.renames, func(r rename) bool { return r.to == to })
	if i < 0 {
		return nil
	}
	return &s.renames[i]
}

func (s *planning) renameFrom(from string) *rename {
	i := slices.IndexFunc(s.renames, func(r rename) bool { return r.from == from })
	if i < 0 {
		return nil
	}
	return &s.renames[i]
}

// chooseStrategy returns the write of a plan that changes something: the
// requested strategy, or for StrategyAuto StrategyScript when an added or
// updated binding needs a script upload (a part type or a rename) and
// StrategySettings otherwise. Requesting StrategySettings for such a change
// is an error naming the binding.
func chooseStrategy(requested Strategy, actions []Action) (Strategy, error) {
	i := slices.IndexFunc(actions, Action.needsScript)
	switch {
	case requested == StrategyAuto && i >= 0:
		return StrategyScript, nil
	case requested == StrategyAuto:
		return StrategySettings, nil
	case requested == StrategySettings && i >= 0:
		a := actions[i]
		what := "a binding of type " + a.desired.Type()
		if a.rename {
			what = "a rename (inherit with old_name)"
		}
		return "", &Error{Name: a.Name, Type: a.desired.Type(),
			Msg: what + " cannot be written by a settings PATCH; use strategy script"}
	}
	return requested, nil
}

// needsScript reports whether the action writes what only a script upload
// can: a binding of a part type, or a rename.
func (a Action) needsScript() bool {
	return (a.Kind == ActionAdd || a.Kind == ActionUpdate) && (a.rename || a.desired.InPart())
}

// As returns the plan written with strategy s instead of its own: the same
// actions and record, with the request rebuilt for s. It fails when s is
// StrategySettings and the change needs a script upload (a part type or a
// rename), or when s is not a writing strategy. A no-op plan is returned
// as it is.
func (p *Plan) As(s Strategy) (*Plan, error) {
	if p.NoOp() || s == p.Strategy {
		return p, nil
	}
	switch s {
	case StrategySettings:
		for x := range p.Actions {
			a := &p.Actions[x]
			if (a.Kind == ActionAdd || a.Kind == ActionUpdate) && (a.rename || a.desired.InPart()) {
				return nil, &Error{Name: a.Name, Type: a.desired.Type(), Msg: "cannot be written by a settings PATCH"}
			}
		}
	case StrategyScript, StrategyVersion:
	default:
		return nil, fmt.Errorf("planner: cannot write a plan with strategy %q", s.name())
	}
	out := *p
	out.Strategy = s
	out.Request, out.NeedsParts = buildRequest(s, p.Actions)
	return &out, nil
}

// buildRequest builds the request of a writing plan from its actions, which
// are sorted by name, and the parts the upload needs.
func buildRequest(s Strategy, actions []Action) (Request, []string) {
	req := Request{Bindings: make([]wire.Binding, 0, len(actions))}
	if s == StrategyScript {
		req.KeepBindings = keptWriteOnlyTypes(actions)
	}
	var parts []string
	for _, a := range actions {
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
			case s == StrategySettings:
				req.Bindings = append(req.Bindings, wire.Ref(a.Type, a.Name))
			case !slices.Contains(req.KeepBindings, a.Type):
				req.Bindings = append(req.Bindings, wire.Inherit(a.Name))
			}
		}
	}
	slices.Sort(parts)
	return req, slices.Compact(parts)
}

// keptWriteOnlyTypes returns the write-only types that a script upload
// carries over with keep_bindings (a version inherits each binding by
// name instead): each of wire.WriteOnlyTypes(),
// unless a binding of that type is removed or changes type (it would
// otherwise come back).
func keptWriteOnlyTypes(actions []Action) []string {
	var out []string
	for _, typ := range wire.WriteOnlyTypes() {
		gone := slices.ContainsFunc(actions, func(a Action) bool {
			return (a.Kind == ActionRemove && a.Type == typ) || (a.Kind == ActionUpdate && a.OldType == typ)
		})
		if !gone {
			out = append(out, typ)
		}
	}
	return out
}

// inheritError is the error for a desired inherit binding with nothing live
// to inherit (the API's 10057 under bindings_inherit=strict).
func inheritError(b *wire.Binding, r *rename) error {
	if r != nil {
		return &Error{Name: b.Name(), Type: b.Type(), Field: "old_name", Msg: fmt.Sprintf(
			"renames %q, but the script has no binding named %q or %q", r.from, r.from, r.to)}
	}
	return &Error{Name: b.Name(), Type: b.Type(), Field: "name",
		Msg: "inherits a binding that the script does not have"}
}
