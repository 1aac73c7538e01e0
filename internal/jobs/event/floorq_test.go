package event

import (
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// TestQuarantinedFloor: quarantining the replace that set the floor makes
// its event quarantined, its operations hidden and the state no longer
// exclusive (it removes nothing); the same replace folded again (a replay)
// or a newer replace lifts it, and a floor raised since is not touched.
func TestQuarantinedFloor(t *testing.T) {
	g := func(n uint64) *uint64 { return &n }
	replace := func(id string, gen uint64, names ...string) *Event {
		e := &Event{Schema: SchemaV1, ID: id, AccountID: "023e105f4ecef8ad9ca31a8372d0c353", Script: "s", Op: OpReplace, Generation: g(gen)}
		for _, n := range names {
			e.Bindings = append(e.Bindings, wire.MustParseBinding(`{"type":"plain_text","name":"`+n+`","text":"x"}`))
		}
		return e
	}
	d := &DesiredState{}
	d.Fold(replace("r1", 1, "A", "B"))
	d.Fold(replace("r2", 2, "A"))
	q := Quarantine{Reason: ReasonAPIRejected, Error: "binding B cannot be removed"}
	if d.QuarantineFloor(Stamp{Gen: 1, ID: "r1"}, q) {
		t.Fatal("quarantined a floor that a newer replace raised")
	}
	if !d.QuarantineFloor(*d.Floor, q) {
		t.Fatal("QuarantineFloor changed nothing")
	}
	if got := d.Quarantined("r2"); got == nil || got.Error != q.Error {
		t.Fatalf("Quarantined(r2) = %v", got)
	}
	if in, _ := d.PlannerInput(nil); in.Exclusive || len(in.Bindings) != 0 {
		t.Fatalf("planner input of a quarantined replace = %+v, want nothing exclusive or desired", in)
	}
	again := d.Clone()
	if res := again.Fold(replace("r2", 2, "A")); res.Applied == 0 || again.FloorQ != nil || again.Quarantined("r2") != nil {
		t.Fatalf("replaying the replace did not lift its quarantine: %+v, floor_q %v", res, again.FloorQ)
	}
	if in, _ := again.PlannerInput(nil); !in.Exclusive {
		t.Fatal("a replayed replace is not exclusive again")
	}
	newer := d.Clone()
	newer.Fold(replace("r3", 3, "C"))
	if newer.FloorQ != nil || newer.Quarantined("r3") != nil {
		t.Fatal("a newer replace kept the old floor's quarantine")
	}
}
