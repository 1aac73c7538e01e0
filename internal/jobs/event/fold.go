package event

import (
	"bytes"
	"slices"
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/planner"
)

// Stamp orders operations on one script: by generation, then by event id
// (the greater id is newer), so ties resolve the same way everywhere.
//
// An operation of an event without a generation is Free: it is stamped
// with the highest generation folded so far, and it is newer than every
// operation of that generation or an older one (folding.newer).
type Stamp struct {
	Gen  uint64 `json:"g"`
	ID   string `json:"id"`
	Free bool   `json:"u,omitempty"`
}

// Compare returns -1, 0 or +1 as s is older than, the same as, or newer
// than o.
func (s Stamp) Compare(o Stamp) int {
	switch {
	case s.Gen < o.Gen:
		return -1
	case s.Gen > o.Gen:
		return 1
	}
	return strings.Compare(s.ID, o.ID)
}

// Op kinds of a name's newest operation.
const (
	NameUpsert = "upsert"
	NameRemove = "remove" // explicit remove (patch): deleted whoever made it
)

// NameOp is the newest operation on one binding name.
type NameOp struct {
	Stamp   Stamp         `json:"s"`
	Op      string        `json:"op"`
	Binding *wire.Binding `json:"binding,omitempty"`
	// Q is set when a reconcile failed permanently because of this
	// operation: it is kept (it still orders later operations) but never
	// applied, and its event is dead-lettered with Q's reason. A newer
	// operation on the name, or the same event delivered again (a replay
	// after a fix), replaces it.
	Q *Quarantine `json:"q,omitempty"`
}

// sameAs reports whether op asks for the same as o, stamps aside.
func (o *NameOp) sameAs(op NameOp) bool {
	if o.Op != op.Op || (o.Binding == nil) != (op.Binding == nil) {
		return false
	}
	return o.Binding == nil || bytes.Equal(o.Binding.CanonicalJSON(), op.Binding.CanonicalJSON())
}

// Quarantine says why an operation is not applied.
type Quarantine struct {
	Reason Reason `json:"reason"`
	Error  string `json:"error"`
}

// DesiredState is a script's desired state: per binding name, the newest
// operation by Stamp (last writer wins), and the floor set by the newest
// replace. A name absent from Names is not desired when Floor is set (a
// replace covered it) and unmanaged otherwise. Every entry of Names is newer
// than Floor. Folding the same events in any order, any number of times,
// gives the same DesiredState.
type DesiredState struct {
	Version int             `json:"v"`
	Ref     cfapi.ScriptRef `json:"ref"`
	Floor   *Stamp          `json:"floor,omitempty"`
	// FloorQ is set when the API refused a removal the floor implied (a
	// binding the reconciler applied that the replace no longer lists):
	// the replace is quarantined, so the floor still orders operations
	// but removes nothing. The same replace delivered again, or a newer
	// one, lifts it.
	FloorQ *Quarantine        `json:"floor_q,omitempty"`
	Names  map[string]*NameOp `json:"names"`
	// Strategy is the strategy of the newest event, by stamp.
	Strategy      string `json:"strategy,omitempty"`
	StrategyStamp *Stamp `json:"strategy_stamp,omitempty"`
	// MaxGen is the highest generation folded; events without a generation
	// are stamped with it so that they apply in delivery order.
	MaxGen uint64 `json:"max_gen"`
	// Seen holds the store times (Unix ns, from the message metadata) of
	// the last events without a generation that were folded, ascending, at
	// most maxSeen; SeenFloor is the latest store time dropped from it.
	// Delivering such an event again, stored at a time in Seen or not
	// after SeenFloor, is a duplicate rather than a newer operation.
	Seen      []int64 `json:"seen,omitempty"`
	SeenFloor int64   `json:"seen_floor,omitempty"`
	// Recent holds the ids of the last events without a generation and
	// without a store time (not read from a stream) that were folded, at
	// most maxRecent, for the same purpose.
	Recent []string `json:"recent,omitempty"`
}

// maxRecent bounds DesiredState.Recent, and maxSeen DesiredState.Seen.
const (
	maxRecent = 32
	maxSeen   = 256
)

// seen reports whether an event without generation stored at t was folded
// before, and records it if not.
func (d *DesiredState) seen(t int64) bool {
	if t <= d.SeenFloor {
		return true
	}
	i, found := slices.BinarySearch(d.Seen, t)
	if found {
		return true
	}
	d.Seen = slices.Insert(d.Seen, i, t)
	if len(d.Seen) > maxSeen {
		d.SeenFloor = d.Seen[len(d.Seen)-maxSeen-1]
		d.Seen = slices.Delete(d.Seen, 0, len(d.Seen)-maxSeen)
	}
	return false
}

// NewDesiredState returns the empty desired state of a script.
func NewDesiredState(ref cfapi.ScriptRef) *DesiredState {
	return &DesiredState{Version: 1, Ref: ref, Names: map[string]*NameOp{}}
}

// FoldResult says what folding one event changed.
type FoldResult struct {
	Applied   int // operations that changed the desired state
	Stale     int // operations older than the newest on their name (or the floor)
	Duplicate int // operations already folded (same event again)
}

// Changed reports whether the desired state changed.
func (r FoldResult) Changed() bool { return r.Applied > 0 }

// AllStale reports whether every operation of the event was stale: then the
// event needs no reconcile.
func (r FoldResult) AllStale() bool { return r.Stale > 0 && r.Applied == 0 && r.Duplicate == 0 }

// effective returns the stamp a new operation on name must beat: the
// name's newest operation, or the floor.
func (d *DesiredState) effective(name string) (Stamp, bool) {
	if op, ok := d.Names[name]; ok {
		return op.Stamp, true
	}
	if d.Floor != nil {
		return *d.Floor, true
	}
	return Stamp{}, false
}

// Fold applies one event (docs/events.md, "Order"). An event with a generation
// changes a name only where its stamp is newer than the name's newest
// operation (or the floor); a replace also removes every other name older
// than it and raises the floor. An event without a generation applies
// unconditionally, in delivery order.
func (d *DesiredState) Fold(e *Event) FoldResult {
	if d.Names == nil {
		d.Names = map[string]*NameOp{}
	}
	f := folding{d: d, ordered: e.Generation != nil}
	if !f.ordered && (e.StoredAt > 0 && d.seen(e.StoredAt) || e.StoredAt == 0 && slices.Contains(d.Recent, e.ID)) {
		// Folded before: its operations are in place, or newer ones
		// replaced them; either way nothing changes.
		f.res.Duplicate = len(e.Upsert) + len(e.Remove) + len(e.Bindings)
		if e.Op == OpReplace {
			f.res.Duplicate++
		}
		return f.res
	}
	f.s = Stamp{Gen: d.MaxGen, ID: e.ID, Free: !f.ordered}
	if f.ordered {
		f.s.Gen = *e.Generation
		d.MaxGen = max(d.MaxGen, f.s.Gen)
	} else if e.StoredAt == 0 {
		d.Recent = append(d.Recent, e.ID)
		if len(d.Recent) > maxRecent {
			d.Recent = slices.Delete(d.Recent, 0, len(d.Recent)-maxRecent)
		}
	}
	switch e.Op {
	case OpPatch:
		for i := range e.Upsert {
			b := e.Upsert[i]
			f.apply(b.Name(), NameOp{Op: NameUpsert, Binding: &b})
		}
		for _, name := range e.Remove {
			f.apply(name, NameOp{Op: NameRemove})
		}
	case OpReplace:
		f.replace(e.Bindings)
	}
	if d.StrategyStamp == nil || f.newer(*d.StrategyStamp, true) > 0 {
		st := f.s
		d.StrategyStamp = &st
		d.Strategy = e.Strategy
	}
	return f.res
}

// folding is the fold of one event with stamp s.
type folding struct {
	d       *DesiredState
	s       Stamp
	ordered bool // the event has a generation
	res     FoldResult
}

// newer reports whether an operation stamped f.s beats what currently
// holds a name (or the floor): +1 newer, 0 the same operation, -1 stale.
// An event without generation beats everything but itself. An event with
// a generation beats a Free operation only with a higher generation: the
// Free one was folded after its generation was seen.
func (f *folding) newer(cur Stamp, has bool) int {
	if !has {
		return 1
	}
	if f.ordered && cur.Free && f.s.Gen <= cur.Gen {
		return -1
	}
	c := f.s.Compare(cur)
	if !f.ordered && c != 0 {
		return 1
	}
	return c
}

// apply makes op the operation on name if it is newer.
func (f *folding) apply(name string, op NameOp) {
	cur, has := f.d.effective(name)
	c := f.newer(cur, has)
	old := f.d.Names[name]
	switch {
	case c == 0 && old != nil && old.Q != nil:
		c = 1 // the same event again (a replay): lift the quarantine
	case c > 0 && !f.ordered && old != nil && old.Q == nil && old.sameAs(op):
		// An event without generation asking for what is desired already
		// (a backfill run again): nothing to change.
		c = 0
	}
	switch c {
	case 0:
		f.res.Duplicate++
	case -1:
		f.res.Stale++
	default:
		op.Stamp = f.s
		f.d.Names[name] = &op
		f.res.Applied++
	}
}

// replace applies a replace: its bindings are upserted, every other name
// is no longer desired where the replace is newer, and the floor rises.
func (f *folding) replace(bindings []wire.Binding) {
	d := f.d
	in := make(map[string]bool, len(bindings))
	for i := range bindings {
		b := bindings[i]
		in[b.Name()] = true
		f.apply(b.Name(), NameOp{Op: NameUpsert, Binding: &b})
	}
	for name, op := range d.Names {
		if !in[name] && f.newer(op.Stamp, true) > 0 {
			delete(d.Names, name)
			f.res.Applied++
		}
	}
	// The floor is one more operation, on every name not in the set.
	var floor Stamp
	if d.Floor != nil {
		floor = *d.Floor
	}
	switch c := f.newer(floor, d.Floor != nil); {
	case c > 0:
		if d.Floor == nil || !f.ordered || f.s.Compare(*d.Floor) > 0 {
			fs := f.s
			d.Floor, d.FloorQ = &fs, nil
		}
		f.res.Applied++
	case c == 0 && d.FloorQ != nil:
		d.FloorQ = nil // the same replace again (a replay): lift the quarantine
		f.res.Applied++
	case c == 0:
		f.res.Duplicate++
	default:
		f.res.Stale++
	}
}

// Desired returns the planner's view of the state: bindings to keep
// present, names to remove whoever made them, and whether owned bindings
// that are not desired are removed (a replace was folded).
func (d *DesiredState) Desired() planner.Desired {
	out := planner.Desired{Exclusive: d.Floor != nil && d.FloorQ == nil}
	names := make([]string, 0, len(d.Names))
	for n := range d.Names {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		op := d.Names[n]
		switch op.Op {
		case NameUpsert:
			if op.Binding != nil {
				out.Bindings = append(out.Bindings, *op.Binding)
			}
		case NameRemove:
			out.Remove = append(out.Remove, n)
		}
	}
	st, err := planner.ParseStrategy(d.Strategy)
	if err != nil {
		st = planner.StrategyAuto
	}
	out.Strategy = st
	return out
}

// Clone returns a deep copy of d that can be folded without changing d.
func (d *DesiredState) Clone() *DesiredState {
	c := *d
	c.Names = make(map[string]*NameOp, len(d.Names))
	for n, op := range d.Names {
		cp := *op
		c.Names[n] = &cp
	}
	if d.Floor != nil {
		f := *d.Floor
		c.Floor = &f
	}
	if d.StrategyStamp != nil {
		st := *d.StrategyStamp
		c.StrategyStamp = &st
	}
	c.Recent = slices.Clone(d.Recent)
	c.Seen = slices.Clone(d.Seen)
	return &c
}

// Quarantine marks every operation of the events in ids as not to be
// applied, with q. It returns how many operations it marked.
func (d *DesiredState) Quarantine(ids map[string]bool, q Quarantine) int {
	n := 0
	for _, op := range d.Names {
		if ids[op.Stamp.ID] && op.Q == nil {
			qq := q
			op.Q = &qq
			n++
		}
	}
	return n
}

// QuarantineFloor quarantines the replace that set the floor stamped
// floor (see FloorQ) and its operations, with q. It reports whether it
// changed anything; it changes nothing when a newer replace has raised the
// floor since.
func (d *DesiredState) QuarantineFloor(floor Stamp, q Quarantine) bool {
	if d.Floor == nil || *d.Floor != floor {
		return false
	}
	changed := d.Quarantine(map[string]bool{floor.ID: true}, q) > 0
	if d.FloorQ == nil {
		qq := q
		d.FloorQ = &qq
		changed = true
	}
	return changed
}

// Quarantined returns why event id is not applied: the quarantine of its
// operations when every operation of the event that is still in d (its
// floor included, when it is the replace that set it) is quarantined, nil
// otherwise (applied, or replaced by newer operations).
func (d *DesiredState) Quarantined(id string) *Quarantine {
	var q *Quarantine
	if d.Floor != nil && d.Floor.ID == id && d.FloorQ != nil {
		q = d.FloorQ
	}
	for _, op := range d.Names {
		if op.Stamp.ID != id {
			continue
		}
		if op.Q == nil {
			return nil
		}
		q = op.Q
	}
	return q
}

// Tombstones returns the explicit removes of d by name.
func (d *DesiredState) Tombstones() map[string]Stamp {
	var out map[string]Stamp
	for n, op := range d.Names {
		if op.Op == NameRemove && op.Q == nil {
			if out == nil {
				out = map[string]Stamp{}
			}
			out[n] = op.Stamp
		}
	}
	return out
}

// PlannerInput returns what the planner sees of d, given the explicit
// removes already carried out (the last-applied record's Removed):
// quarantined operations are left out and their names are hidden (neither
// desired nor owned, so left alone); an explicit remove carried out with
// the same stamp is left out too, so a binding of that name created again
// later by someone else is not deleted again. It returns the names to hide
// from the record.
func (d *DesiredState) PlannerInput(removed map[string]Stamp) (planner.Desired, []string) {
	out := d.Desired()
	var hidden []string
	var bindings []wire.Binding
	for _, b := range out.Bindings {
		if d.Names[b.Name()].Q != nil {
			hidden = append(hidden, b.Name())
			continue
		}
		bindings = append(bindings, b)
	}
	out.Bindings = bindings
	var remove []string
	for _, n := range out.Remove {
		op := d.Names[n]
		switch done, ok := removed[n]; {
		case op.Q != nil:
			hidden = append(hidden, n)
		case ok && done == op.Stamp:
			// carried out already: the name is no longer managed
		default:
			remove = append(remove, n)
		}
	}
	out.Remove = remove
	return out, hidden
}
