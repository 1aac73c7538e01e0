package planner

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestRenameIsCarriedOutOnce: once a rename (inherit with old_name) has
// been carried out, a binding created again under the old name is someone
// else's: it is left alone (unowned), the renamed binding is kept, and the
// plan writes nothing, however often it is planned again. Before the
// rename was carried out, the old name is still renamed.
func TestRenameIsCarriedOutOnce(t *testing.T) {
	p := testPlanner(t)
	d := Desired{Bindings: mbs(`{"type":"inherit","name":"NEW_DB","old_name":"OLD_DB"}`)}
	oldDB := `{"type":"d1","name":"OLD_DB","database_id":"c0ffee"}`
	first, err := p.Plan(d, mbs(oldDB), LastApplied{})
	if err != nil {
		t.Fatal(err)
	}
	if first.NoOp() || first.Actions[0].Kind != ActionAdd {
		t.Fatalf("first plan = %v, want the rename", first.Actions)
	}
	renamed := `{"type":"d1","name":"NEW_DB","database_id":"c0ffee"}`
	// Someone creates OLD_DB again, with the same or another value.
	for _, again := range []string{oldDB, `{"type":"d1","name":"OLD_DB","database_id":"beef"}`} {
		last := first.Applied
		for i := 0; i < 2; i++ {
			pl, err := p.Plan(d, mbs(renamed, again), last)
			if err != nil {
				t.Fatal(err)
			}
			want := []Action{{Kind: ActionKeep, Name: "NEW_DB", Type: "d1", Reason: ReasonInherited},
				{Kind: ActionUnowned, Name: "OLD_DB", Type: "d1", Reason: ReasonUnowned}}
			if diff := cmp.Diff(want, pl.Actions, ignoreUnexported, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("plan %d after OLD_DB came back (-want +got):\n%s", i+1, diff)
			}
			if !pl.NoOp() {
				t.Errorf("plan %d after OLD_DB came back writes: %v", i+1, pl.Strategy)
			}
			last = pl.Applied
		}
	}
	// A rename whose new name is live but was never carried out by the
	// reconciler (the record does not say so) still happens.
	pl, err := p.Plan(d, mbs(oldDB, `{"type":"plain_text","name":"NEW_DB","text":"placeholder"}`), record(p, `{"type":"plain_text","name":"NEW_DB","text":"placeholder"}`))
	if err != nil {
		t.Fatal(err)
	}
	if pl.NoOp() {
		t.Errorf("a rename not carried out yet was skipped: %v", pl.Actions)
	}
}
