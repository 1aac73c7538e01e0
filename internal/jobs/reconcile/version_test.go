package reconcile

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/planner"
)

const acct = cfapitest.DefaultAccount

// TestWriteAnnotations: workers/message names the changes and the
// events, newest first, and stays within the API's 1000 bytes however many
// there are; no other annotation is written.
func TestWriteAnnotations(t *testing.T) {
	ds := event.NewDesiredState(cfapi.ScriptRef{AccountID: acct, Script: "w"})
	ds.Floor = &event.Stamp{Gen: 1, ID: "replace-1"}
	ds.Names["A"] = &event.NameOp{Stamp: event.Stamp{Gen: 3, ID: "ev-3"}, Op: event.NameUpsert}
	ds.Names["B"] = &event.NameOp{Stamp: event.Stamp{Gen: 2, ID: "ev-2"}, Op: event.NameUpsert}
	plan := &planner.Plan{Actions: []planner.Action{
		{Kind: planner.ActionAdd, Name: "A"}, {Kind: planner.ActionUpdate, Name: "B"},
		{Kind: planner.ActionRemove, Name: "OLD"}, {Kind: planner.ActionKeep, Name: "K"},
	}}
	got := writeAnnotations(ds, plan)
	want := map[string]string{"workers/message": "reconciler: bindings +A ~B -OLD (events ev-3 ev-2 replace-1)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}

	var ids []string
	for i := 0; i < 40; i++ {
		ids = append(ids, fmt.Sprintf("7f9c2a1e-3f1b-4c55-9b7e-0c1d2e3f4a%02d", i))
	}
	for n := 0; n <= len(ids); n++ {
		s := eventsNote(ids[:n], 400)
		if len(s) > 400 || (n > 0 && !strings.HasPrefix(s, "event")) || (n == 0 && s != "") {
			t.Errorf("%d ids: %q (%d bytes)", n, s, len(s))
		}
	}
	// 400 bytes hold "events", ten 37-byte ids and " +30".
	if s := eventsNote(ids, 400); !strings.HasPrefix(s, "events "+ids[0]+" "+ids[1]) || !strings.HasSuffix(s, " "+ids[9]+" +30") {
		t.Errorf("40 ids: %q", s)
	}
	if s := eventsNote([]string{strings.Repeat("é", 300)}, 400); len(s) > 400 || !strings.HasSuffix(s, "…") {
		t.Errorf("long id: %q (%d bytes)", s, len(s))
	}
	many := &planner.Plan{}
	for i := 0; i < 300; i++ {
		many.Actions = append(many.Actions, planner.Action{Kind: planner.ActionAdd, Name: fmt.Sprintf("NAME_%03d", i)})
		ds.Names[fmt.Sprintf("NAME_%03d", i)] = &event.NameOp{Stamp: event.Stamp{Gen: uint64(10 + i), ID: ids[i%len(ids)]}, Op: event.NameUpsert}
	}
	if s := writeAnnotations(ds, many)[annotationMessage]; len(s) > maxAnnotation || !strings.Contains(s, "(events ") {
		t.Errorf("message %d bytes: %q", len(s), s)
	}
}

// TestStrategyFor: DefaultStrategy decides what "auto" (or nothing)
// means; an explicit strategy wins.
func TestStrategyFor(t *testing.T) {
	for _, tt := range []struct {
		def, requested, want planner.Strategy
	}{
		{"", planner.StrategyAuto, planner.StrategyAuto},
		{"", planner.StrategyNone, planner.StrategyAuto},
		{"auto", planner.StrategyAuto, planner.StrategyAuto},
		{"version", planner.StrategyAuto, planner.StrategyVersion},
		{"version", planner.StrategyNone, planner.StrategyVersion},
		{"settings", planner.StrategyScript, planner.StrategyScript},
		{"version", planner.StrategySettings, planner.StrategySettings},
		{"bogus", planner.StrategyAuto, planner.StrategyAuto},
	} {
		if got := (Config{DefaultStrategy: tt.def}).strategyFor(tt.requested); got != tt.want {
			t.Errorf("default %q, requested %q: %q, want %q", tt.def, tt.requested, got, tt.want)
		}
	}
}
