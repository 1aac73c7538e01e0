package event

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

var foldRef = cfapi.ScriptRef{AccountID: "023e105f4ecef8ad9ca31a8372d0c353", Namespace: "customers", Script: "tenant-1"}

func u64(v uint64) *uint64 { return &v }

func kvBinding(name, id string) wire.Binding {
	return wire.MustParseBinding(fmt.Sprintf(`{"type":"kv_namespace","name":%q,"namespace_id":%q}`, name, id))
}

// randomEvents builds a random sequence of replace and patch events with
// generations, over a small pool of names so that they collide often.
func randomEvents(rng *rand.Rand, n int) []*Event {
	names := []string{"A", "B", "C", "D", "E", "F"}
	var out []*Event
	for i := 0; i < n; i++ {
		e := &Event{Schema: SchemaV1, ID: fmt.Sprintf("ev-%03d", i), AccountID: foldRef.AccountID,
			DispatchNamespace: foldRef.Namespace, Script: foldRef.Script, Generation: u64(uint64(rng.IntN(8) + 1))}
		pick := func() []string {
			p := slices.Clone(names)
			rng.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
			return p[:rng.IntN(len(p)+1)]
		}
		if rng.IntN(3) == 0 {
			e.Op = OpReplace
			e.Bindings = []wire.Binding{}
			for _, nm := range pick() {
				e.Bindings = append(e.Bindings, kvBinding(nm, e.ID))
			}
		} else {
			e.Op = OpPatch
			set := pick()
			cut := rng.IntN(len(set) + 1)
			for _, nm := range set[:cut] {
				e.Upsert = append(e.Upsert, kvBinding(nm, e.ID))
			}
			e.Remove = set[cut:]
		}
		e.Strategy = []string{"", "settings", "script"}[rng.IntN(3)]
		out = append(out, e)
	}
	return out
}

func stateJSON(t *testing.T, d *DesiredState) string {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFoldOrderIndependence is the property test of docs/events.md "Order":
// random sequences of replace/patch events, shuffled and duplicated,
// always give the same desired state as the in-order sequence.
func TestFoldOrderIndependence(t *testing.T) {
	for seed := uint64(0); seed < 500; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		events := randomEvents(rng, 1+rng.IntN(12))

		inOrder := slices.Clone(events)
		slices.SortFunc(inOrder, func(a, b *Event) int {
			return Stamp{Gen: *a.Generation, ID: a.ID}.Compare(Stamp{Gen: *b.Generation, ID: b.ID})
		})
		want := NewDesiredState(foldRef)
		for _, e := range inOrder {
			want.Fold(e)
		}

		for trial := 0; trial < 5; trial++ {
			delivered := slices.Clone(events)
			for _, e := range events { // duplicates
				if rng.IntN(3) == 0 {
					delivered = append(delivered, e)
				}
			}
			rng.Shuffle(len(delivered), func(i, j int) { delivered[i], delivered[j] = delivered[j], delivered[i] })
			got := NewDesiredState(foldRef)
			for _, e := range delivered {
				got.Fold(e)
			}
			if diff := cmp.Diff(stateJSON(t, want), stateJSON(t, got)); diff != "" {
				t.Fatalf("seed %d trial %d: state depends on delivery order (-in order +shuffled):\n%s", seed, trial, diff)
			}
			// A state stored and loaded again folds the same way.
			var reloaded DesiredState
			if err := json.Unmarshal([]byte(stateJSON(t, got)), &reloaded); err != nil {
				t.Fatal(err)
			}
			for _, e := range delivered[:len(delivered)/2] {
				if r := reloaded.Fold(e); r.Changed() {
					t.Fatalf("seed %d: refolding event %s changed a converged state: %+v", seed, e.ID, r)
				}
			}
		}
	}
}

func TestFoldCases(t *testing.T) {
	patch := func(id string, gen uint64, upsert []wire.Binding, remove ...string) *Event {
		return &Event{ID: id, Generation: u64(gen), Op: OpPatch, Upsert: upsert, Remove: remove}
	}
	replace := func(id string, gen uint64, bs ...wire.Binding) *Event {
		return &Event{ID: id, Generation: u64(gen), Op: OpReplace, Bindings: bs}
	}
	t.Run("stale patch after newer patch", func(t *testing.T) {
		d := NewDesiredState(foldRef)
		d.Fold(patch("b", 5, []wire.Binding{kvBinding("A", "new")}))
		r := d.Fold(patch("a", 3, []wire.Binding{kvBinding("A", "old"), kvBinding("B", "b")}))
		if r.Stale != 1 || r.Applied != 1 || r.AllStale() {
			t.Fatalf("result = %+v, want 1 stale (A) and 1 applied (B)", r)
		}
		if got, _ := d.Names["A"].Binding.String("namespace_id"); got != "new" {
			t.Fatalf("A = %s", got)
		}
	})
	t.Run("replace floor makes older ops stale on unmentioned names", func(t *testing.T) {
		d := NewDesiredState(foldRef)
		d.Fold(replace("r", 10, kvBinding("A", "a")))
		r := d.Fold(patch("p", 9, []wire.Binding{kvBinding("Z", "z")}))
		if !r.AllStale() {
			t.Fatalf("result = %+v, want all stale", r)
		}
		if _, ok := d.Names["Z"]; ok {
			t.Fatal("stale op applied")
		}
		if !d.Desired().Exclusive {
			t.Fatal("replace should make the state exclusive")
		}
	})
	t.Run("duplicate is not stale", func(t *testing.T) {
		d := NewDesiredState(foldRef)
		e := patch("p", 1, []wire.Binding{kvBinding("A", "a")}, "OLD")
		d.Fold(e)
		r := d.Fold(e)
		if r.Changed() || r.AllStale() || r.Duplicate != 2 {
			t.Fatalf("result = %+v, want 2 duplicates", r)
		}
	})
	t.Run("same generation ties by id", func(t *testing.T) {
		d1, d2 := NewDesiredState(foldRef), NewDesiredState(foldRef)
		x := patch("x", 4, []wire.Binding{kvBinding("A", "x")})
		y := patch("y", 4, []wire.Binding{kvBinding("A", "y")})
		d1.Fold(x)
		d1.Fold(y)
		d2.Fold(y)
		d2.Fold(x)
		for _, d := range []*DesiredState{d1, d2} {
			if got, _ := d.Names["A"].Binding.String("namespace_id"); got != "y" {
				t.Fatalf("A = %s, want y (greater id wins)", got)
			}
		}
	})
	t.Run("no generation applies in delivery order", func(t *testing.T) {
		d := NewDesiredState(foldRef)
		d.Fold(patch("p", 9, []wire.Binding{kvBinding("A", "gen9")}))
		r := d.Fold(&Event{ID: "a-no-gen", Op: OpPatch, Upsert: []wire.Binding{kvBinding("A", "nogen")}})
		if !r.Changed() {
			t.Fatalf("event without generation was not applied: %+v", r)
		}
		if got, _ := d.Names["A"].Binding.String("namespace_id"); got != "nogen" {
			t.Fatalf("A = %s", got)
		}
	})
	t.Run("patch remove is explicit, replace drop is ownership-based", func(t *testing.T) {
		d := NewDesiredState(foldRef)
		d.Fold(patch("p", 1, []wire.Binding{kvBinding("A", "a")}, "THEIRS"))
		got := d.Desired()
		if len(got.Remove) != 1 || got.Remove[0] != "THEIRS" || got.Exclusive {
			t.Fatalf("desired = %+v", got)
		}
		d.Fold(replace("r", 2, kvBinding("B", "b")))
		got = d.Desired()
		if len(got.Remove) != 0 || !got.Exclusive || len(got.Bindings) != 1 || got.Bindings[0].Name() != "B" {
			t.Fatalf("desired after replace = %+v", got)
		}
	})
}
