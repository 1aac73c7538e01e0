package reconcile

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
)

// TestChangesOfNamesKindsNeverValues: a plan's changes come out as one
// Change per binding name (a rename once, under its new name, with the old
// one), keeps and bindings left alone do not, and no value is carried.
func TestChangesOfNamesKindsNeverValues(t *testing.T) {
	p, err := planner.New(planner.Options{FingerprintKey: []byte("test-fingerprint-key")})
	if err != nil {
		t.Fatal(err)
	}
	bs := func(raws ...string) []wire.Binding {
		out := make([]wire.Binding, len(raws))
		for i, r := range raws {
			out[i] = wire.MustParseBinding(r)
		}
		return out
	}
	live := bs(`{"type":"d1","name":"THEIR_DB","id":"4e1c28a9-90e4-41da-8b4b-6cf36e5abb29"}`,
		`{"type":"plain_text","name":"PLAN","text":"free"}`,
		`{"type":"plain_text","name":"KEEP","text":"k"}`,
		`{"type":"plain_text","name":"GONE","text":"g"}`,
		`{"type":"plain_text","name":"RETYPED","text":"t"}`)
	d := planner.Desired{Bindings: bs(`{"type":"inherit","name":"NEW_DB","old_name":"THEIR_DB"}`,
		`{"type":"plain_text","name":"PLAN","text":"pro"}`,
		`{"type":"plain_text","name":"KEEP","text":"k"}`,
		`{"type":"secret_text","name":"TOKEN","text":"hunter2"}`,
		`{"type":"json","name":"RETYPED","json":{"a":1}}`),
		Remove: []string{"GONE"}}
	plan, err := p.Plan(d, live, planner.LastApplied{})
	if err != nil {
		t.Fatal(err)
	}
	want := []state.Change{
		{Name: "GONE", Kind: state.ChangeRemove, Type: "plain_text"},
		{Name: "NEW_DB", Kind: state.ChangeRename, Type: "d1", From: "THEIR_DB"},
		{Name: "PLAN", Kind: state.ChangeUpdate, Type: "plain_text"},
		{Name: "RETYPED", Kind: state.ChangeUpdate, Type: "json", OldType: "plain_text"},
		{Name: "TOKEN", Kind: state.ChangeAdd, Type: "secret_text"},
	}
	if diff := cmp.Diff(want, changesOf(plan)); diff != "" {
		t.Errorf("changes (-want +got):\n%s\nplan:\n%s", diff, plan)
	}
	if changesOf(nil) != nil {
		t.Error("changesOf(nil) is not empty")
	}
}
