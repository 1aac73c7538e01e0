package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// TestReplayOfQuarantinedEvent: an event whose operation was quarantined
// (the planner refused an inherit of a binding the Worker does not have)
// is replayed once the Worker has the binding: with and without a
// generation, and after later events on the script, the replay applies
// the operation and the dead letter is gone; never a silent no-op.
func TestReplayOfQuarantinedEvent(t *testing.T) {
	for _, gen := range []uint64{0, 1} {
		t.Run(fmt.Sprintf("generation %d", gen), func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			h.seedScript("customers", "tenant-1", `{"type":"plain_text","name":"OTHER","text":"x"}`)
			h.startRunner("r1")
			h.publish(newEvent("bad", "customers", "tenant-1", gen, "patch", map[string]any{"upsert": []any{
				b(`{"type":"inherit","name":"INHERITED"}`)}}))
			h.waitDrained(30 * time.Second)
			later := uint64(0)
			if gen > 0 {
				later = gen + 1
			}
			h.publish(newEvent("later", "customers", "tenant-1", later, "patch", map[string]any{"upsert": []any{
				b(`{"type":"plain_text","name":"LATER","text":"yes"}`)}}))
			h.waitDrained(30 * time.Second)
			dl := h.deadLetters()
			if len(dl) != 1 || dl[0].Record.EventID != "bad" || dl[0].Record.Reason != event.ReasonInvalidDesired {
				t.Fatalf("dead letters = %+v", dl)
			}
			// The fix: the Worker gets a deployed version holding the
			// binding the event inherits.
			h.seedScript("customers", "tenant-1", `{"type":"plain_text","name":"INHERITED","text":"from the last version"}`,
				`{"type":"plain_text","name":"LATER","text":"yes"}`)
			res := tools.ReplayDeadLetter(context.Background(), h.js, state.Names{}, dl[0], true)
			if res.Error != "" {
				t.Fatalf("replay = %+v", res)
			}
			h.waitDrained(30 * time.Second)
			if left := h.deadLetters(); len(left) != 0 {
				t.Fatalf("dead letters after the replay = %+v", left)
			}
			ds := h.desired("customers", "tenant-1")
			if q := ds.Quarantined("bad"); q != nil {
				t.Fatalf("the replayed event is still quarantined: %+v", q)
			}
			if op := ds.Names["INHERITED"]; op == nil || op.Q != nil {
				t.Fatalf("the replay did not put its operation in the desired state: %+v", op)
			}
		})
	}
}

// desired reads a script's desired state from KV.
func (h *harness) desired(ns, script string) *event.DesiredState {
	h.t.Helper()
	res, err := state.Open(context.Background(), h.js, h.cfg.SetupConfig.Names)
	if err != nil {
		h.t.Fatal(err)
	}
	ds, _, err := res.NewStore(state.StoreOptions{}).LoadDesired(context.Background(), acct+"."+ns+"."+script)
	if err != nil || ds == nil {
		h.t.Fatalf("desired state of %s: %v", script, err)
	}
	return ds
}
