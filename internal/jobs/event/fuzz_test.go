package event

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/planner"
)

// FuzzFold folds events built from the fuzzer's bytes (chaos suite,
// "Fuzzing": the fold's invariants, docs/events.md "Order"). Events with a
// generation give the same desired state in any delivery order with any
// duplicates; folding an event again never changes a state; a state stored
// and loaded folds the same; a clone folds without touching its original.
//
// Each event takes 4 bytes: op and generation, an upsert mask and a remove
// mask over six names, and a value and strategy selector. An event without
// a generation (generation byte 0) is folded only in the delivery-order
// part of the check.
func FuzzFold(f *testing.F) {
	f.Add([]byte{0x02, 0x03, 0x04, 0x00, 0x05, 0x01, 0x02, 0x11, 0x07, 0x3f, 0x00, 0x22}, uint64(1))
	f.Add([]byte{0x03, 0x01, 0x00, 0x00, 0x03, 0x02, 0x00, 0x01, 0x02, 0x04, 0x08, 0x02, 0x10, 0x10, 0x01, 0x00}, uint64(7))
	f.Add([]byte{0x0e, 0x3f, 0x00, 0x05, 0x0f, 0x00, 0x3f, 0x06, 0x00, 0x01, 0x02, 0x07}, uint64(42))
	names := []string{"A", "B", "C", "D", "E", "F"}
	f.Fuzz(func(t *testing.T, prog []byte, seed uint64) {
		var ordered, unordered []*Event
		for i := 0; i+4 <= len(prog) && i < 4*16; i += 4 {
			opGen, up, rm, val := prog[i], prog[i+1]&0x3f, prog[i+2]&0x3f, prog[i+3]
			e := &Event{Schema: SchemaV1, ID: fmt.Sprintf("ev-%02d", i/4), AccountID: foldRef.AccountID,
				DispatchNamespace: foldRef.Namespace, Script: foldRef.Script,
				Strategy: []string{"", "settings", "script", "version"}[val>>6]}
			if g := opGen >> 1 & 0x0f; g > 0 {
				e.Generation = u64(uint64(g))
			}
			for k, n := range names {
				if up&(1<<k) != 0 {
					b := kvBinding(n, fmt.Sprintf("v%d", val&0x0f))
					if val&0x10 != 0 && k%2 == 0 {
						b = wire.MustParseBinding(fmt.Sprintf(`{"type":"secret_text","name":%q,"text":"s%d"}`, n, val&0x0f))
					}
					if opGen&1 == 1 {
						e.Bindings = append(e.Bindings, b)
					} else {
						e.Upsert = append(e.Upsert, b)
					}
				} else if rm&(1<<k) != 0 && opGen&1 == 0 {
					e.Remove = append(e.Remove, n)
				}
			}
			if opGen&1 == 1 {
				e.Op = OpReplace
				if e.Bindings == nil {
					e.Bindings = []wire.Binding{}
				}
			} else {
				e.Op = OpPatch
			}
			if e.Generation != nil {
				ordered = append(ordered, e)
			} else {
				unordered = append(unordered, e)
			}
		}
		rng := rand.New(rand.NewPCG(seed, seed>>32|1))

		// Order independence over the events with a generation.
		inOrder := slices.Clone(ordered)
		slices.SortFunc(inOrder, func(a, b *Event) int {
			return Stamp{Gen: *a.Generation, ID: a.ID}.Compare(Stamp{Gen: *b.Generation, ID: b.ID})
		})
		want := NewDesiredState(foldRef)
		for _, e := range inOrder {
			want.Fold(e)
		}
		delivered := slices.Clone(ordered)
		for _, e := range ordered {
			if rng.IntN(2) == 0 {
				delivered = append(delivered, e)
			}
		}
		rng.Shuffle(len(delivered), func(i, j int) { delivered[i], delivered[j] = delivered[j], delivered[i] })
		got := NewDesiredState(foldRef)
		for _, e := range delivered {
			got.Fold(e)
		}
		wantJSON, gotJSON := stateJSON(t, want), stateJSON(t, got)
		if wantJSON != gotJSON {
			t.Fatalf("state depends on delivery order:\nin order: %s\nshuffled: %s", wantJSON, gotJSON)
		}

		// Duplicates are harmless, also after a store and load, and a clone
		// folds without changing its original.
		var loaded DesiredState
		if err := json.Unmarshal([]byte(gotJSON), &loaded); err != nil {
			t.Fatal(err)
		}
		for _, e := range ordered {
			if r := loaded.Fold(e); r.Changed() {
				t.Fatalf("folding %s again changed a loaded state: %+v", e.ID, r)
			}
		}
		c := got.Clone()
		for _, e := range unordered {
			c.Fold(e)
		}
		if stateJSON(t, got) != gotJSON {
			t.Fatal("folding into a clone changed the original")
		}
		// Events without a generation apply in delivery order; the same one
		// delivered again is a duplicate.
		for _, e := range unordered {
			if r := c.Fold(e); r.Changed() {
				t.Fatalf("folding %s (no generation) again changed the state: %+v", e.ID, r)
			}
		}
		if err := planner.Validate(got.Desired()); err != nil {
			t.Fatalf("folded desired state is invalid: %v", err)
		}
	})
}
