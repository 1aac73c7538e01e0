package event

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// storedHistory builds n random events as a stream stores them: each has
// a store time (StoredAt) in stream order, and about half have no
// generation.
func storedHistory(rng *rand.Rand, n int) []*Event {
	events := randomEvents(rng, n)
	for i, e := range events {
		e.StoredAt = int64(1_000_000 + 1000*i)
		if rng.IntN(2) == 0 {
			e.Generation = nil
		}
	}
	return events
}

// TestFoldRedeliveryIsIdempotent is the property behind "Duplicates and
// redeliveries are harmless" for every event, with or without a
// generation: over random histories delivered in stream order, with
// deliveries that fail and come back later and with events delivered
// again at random points, folding an event that was folded before never
// changes the desired state.
func TestFoldRedeliveryIsIdempotent(t *testing.T) {
	for seed := uint64(0); seed < 1000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		events := storedHistory(rng, 2+rng.IntN(60))
		d := NewDesiredState(foldRef)
		folded := map[string]bool{}
		var pending []*Event // deliveries handed back, to come again later
		var deliveries []string
		fold := func(e *Event) {
			deliveries = append(deliveries, e.ID)
			before := stateJSON(t, d)
			r := d.Fold(e)
			if folded[e.ID] {
				if after := stateJSON(t, d); after != before {
					t.Fatalf("seed %d: folding %s again (deliveries %v) changed the state (%+v):\nbefore %s\nafter  %s",
						seed, e.ID, deliveries, r, before, after)
				}
			}
			folded[e.ID] = true
		}
		for _, e := range events {
			switch rng.IntN(6) {
			case 0: // the delivery fails before the fold: it comes back later
				pending = append(pending, e)
				continue
			case 1: // folded, but the acknowledgement is lost: again later
				pending = append(pending, e)
			}
			fold(e)
			if len(pending) > 0 && rng.IntN(3) == 0 {
				i := rng.IntN(len(pending))
				fold(pending[i])
				pending = slices.Delete(pending, i, i+1)
			}
			if len(deliveries) > 0 && rng.IntN(4) == 0 { // a random redelivery
				fold(events[rng.IntN(len(events))])
			}
		}
		for _, e := range pending {
			fold(e)
		}
		for _, e := range events {
			fold(e) // every event once more, in stream order
		}
	}
}

// TestFoldRedeliveryAfterManyEvents: the first of 2,000 events without a
// generation on one script, delivered again after all the others (its
// acknowledgement was lost), changes nothing, and neither does any event
// older than the ones the state still remembers.
func TestFoldRedeliveryAfterManyEvents(t *testing.T) {
	d := NewDesiredState(foldRef)
	var events []*Event
	for i := range 2000 {
		e := &Event{Schema: SchemaV1, ID: fmt.Sprintf("ev-%04d", i), AccountID: foldRef.AccountID, DispatchNamespace: foldRef.Namespace,
			Script: foldRef.Script, Op: OpPatch, Upsert: []wire.Binding{kvBinding("X", fmt.Sprintf("v%d", i))}, StoredAt: int64(1000 + i)}
		events = append(events, e)
		d.Fold(e)
	}
	want := stateJSON(t, d)
	for _, i := range []int{0, 1, 976, 1500, 1999} {
		if r := d.Fold(events[i]); r.Changed() || r.Duplicate != 1 {
			t.Errorf("folding %s again: %+v, want a duplicate", events[i].ID, r)
		}
	}
	if got := stateJSON(t, d); got != want {
		t.Errorf("redeliveries changed the state:\n got %s\nwant %s", got, want)
	}
	if len(d.Seen) != maxSeen {
		t.Errorf("%d store times kept, want the bound %d", len(d.Seen), maxSeen)
	}
}

// TestGenerationDoesNotUndoALaterEventWithout: a backfill's patch (no
// generation) folded after a generation-5 event wins over that event
// delivered again, whatever the ids; a generation 6 wins over it.
func TestGenerationDoesNotUndoALaterEventWithout(t *testing.T) {
	mk := func(id string, gen *uint64, value string, at int64) *Event {
		return &Event{Schema: SchemaV1, ID: id, AccountID: foldRef.AccountID, DispatchNamespace: foldRef.Namespace, Script: foldRef.Script,
			Generation: gen, Op: OpPatch, Upsert: []wire.Binding{kvBinding("X", value)}, StoredAt: at}
	}
	d := NewDesiredState(foldRef)
	g5 := mk("zz-generation-5", u64(5), "five", 1)
	d.Fold(g5)
	d.Fold(mk("bf-run-1", nil, "backfill", 2))
	if r := d.Fold(g5); r.Changed() {
		t.Fatalf("generation 5 delivered again undid the backfill: %+v", r)
	}
	if got := d.Names["X"].Binding.Raw(); !strings.Contains(string(got), "backfill") {
		t.Fatalf("X = %s, want the backfill's value", got)
	}
	if r := d.Fold(mk("g6", u64(6), "six", 3)); !r.Changed() {
		t.Fatalf("generation 6 did not win over the backfill: %+v", r)
	}
}
