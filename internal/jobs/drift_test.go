package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

const driftSecret = "drift-secret-value-7"

// driftOf runs tools.Drift and returns its report by script name, and
// the live reads it made; the report never holds the secret value.
func (h *harness) driftOf(res *state.Resources, scope tools.DriftScope) (*tools.DriftReport, map[string]tools.ScriptDrift, int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := h.getSettingsCount()
	rep, err := tools.Drift(ctx, res, h.client(cfapi.Hooks{}), h.planner, scope)
	if err != nil {
		h.t.Fatal(err)
	}
	data, _ := json.Marshal(rep)
	var text strings.Builder
	if err := tools.WriteDrift(&text, rep); err != nil {
		h.t.Fatal(err)
	}
	if strings.Contains(string(data)+text.String(), driftSecret) {
		h.t.Fatalf("the drift report shows the secret value:\n%s\n%s", data, text.String())
	}
	by := map[string]tools.ScriptDrift{}
	for _, s := range rep.Scripts {
		by[s.Script[strings.LastIndex(s.Script, ".")+1:]] = s
	}
	return rep, by, h.getSettingsCount() - before
}

func (h *harness) getSettingsCount() int {
	n := 0
	for _, c := range h.emu.Stats().Requests[cfapi.EPGetSettings] {
		n += c
	}
	return n
}

// TestDriftStates drives scripts through every state of a drift report:
// in sync (read, since no read recorded them converged), drifted (a
// binding changed behind the reconciler's back, and one it wrote
// removed), pending (a desired state the API does not let it write),
// gone (deleted from the namespace: not read), unmanaged (named, no
// state), on ordinary Workers (no listing: every managed script read),
// and a listing that fails (every managed script read, noted).
func TestDriftStates(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, s := range []string{"t-1", "t-2", "t-3", "t-4"} {
		h.seedScript("customers", s)
	}
	h.seedScript("", "w-1")
	res := h.setup()
	h.startRunner("r1")
	for i, s := range []string{"t-1", "t-2", "t-3", "t-4"} {
		h.publish(newEvent(fmt.Sprintf("d-%d", i), "customers", s, 1, "patch", map[string]any{"upsert": []any{
			b(`{"type":"plain_text","name":"PLAN","text":"pro"}`),
			b(`{"type":"secret_text","name":"API_KEY","text":"` + driftSecret + `"}`),
			b(`{"type":"kv_namespace","name":"USER_KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`)}}))
	}
	h.publish(newEvent("w-1", "", "w-1", 1, "patch", map[string]any{"upsert": []any{b(`{"type":"plain_text","name":"PLAN","text":"pro"}`)}}))
	h.waitDrained(30 * time.Second)
	ns := tools.DriftScope{AccountID: acct, Namespace: "customers"}

	rep, by, reads := h.driftOf(res, ns)
	if rep.Managed != 4 || rep.Drifted != 0 || reads != 4 || !rep.Listed {
		t.Fatalf("converged namespace: %+v with %d reads, want 4 managed, none drifted, 4 reads", rep, reads)
	}
	for s, d := range by {
		if d.State != tools.DriftInSync {
			t.Errorf("%s: %+v, want in sync", s, d)
		}
	}

	// Behind the reconciler's back: t-1's PLAN changes and its USER_KV
	// goes; t-3 is deleted; t-2 gets a change the API refuses to write.
	sc, _ := h.emu.Script(acct, "customers", "t-1")
	var kept []wire.Binding
	for _, bd := range sc.Bindings {
		switch bd.Name() {
		case "PLAN":
			kept = append(kept, wire.MustParseBinding(`{"type":"plain_text","name":"PLAN","text":"free"}`))
		case "USER_KV":
		default:
			kept = append(kept, bd)
		}
	}
	sc.Bindings = kept
	if err := h.emu.PutScript(acct, "customers", "t-1", sc); err != nil {
		t.Fatal(err)
	}
	h.emu.DeleteScript(acct, "customers", "t-3")
	h.emu.FailNext(1000, 503, 10013, 0, cfapi.EPPatchSettings, cfapi.EPPutScript)
	h.publish(newEvent("d-new", "customers", "t-2", 2, "patch", map[string]any{"upsert": []any{b(`{"type":"plain_text","name":"REGION","text":"eu"}`)}}))
	store := res.NewStore(state.StoreOptions{})
	h.eventually("t-2's new desired state folded", 30*time.Second, func() (bool, string) {
		ds, _, err := store.LoadDesired(context.Background(), acct+".customers.t-2")
		return err == nil && len(ds.Names) == 4, fmt.Sprintf("%v", err)
	})

	rep, by, reads = h.driftOf(res, tools.DriftScope{AccountID: acct, Namespace: "customers", Scripts: []string{"t-1", "t-2", "t-3", "t-4", "t-9"}})
	want := map[string]string{"t-1": tools.DriftDrifted, "t-2": tools.DriftPending, "t-3": tools.DriftGone, "t-4": tools.DriftInSync, "t-9": tools.DriftUnmanaged}
	for s, st := range want {
		if by[s].State != st {
			t.Errorf("%s: %+v, want %s", s, by[s], st)
		}
	}
	if rep.Drifted != 3 || reads != 3 {
		t.Errorf("report %+v with %d reads, want 3 drifted and 3 reads (t-3 is gone, t-9 unmanaged)", rep, reads)
	}
	changes := map[string]tools.DriftChange{}
	for _, c := range by["t-1"].Changes {
		changes[c.Name] = c
	}
	if c := changes["PLAN"]; len(changes) != 2 || c.Action != "update" || c.Reason != "value changed" ||
		changes["USER_KV"].Action != "add" || changes["USER_KV"].Reason != "missing from live" {
		t.Errorf("t-1 changes = %+v, want PLAN updated (value changed) and USER_KV added (missing from live)", by["t-1"].Changes)
	}
	if cs := by["t-2"].Changes; len(cs) != 1 || cs[0].Name != "REGION" || cs[0].Action != "add" {
		t.Errorf("t-2 changes = %+v, want REGION added", cs)
	}

	// Ordinary Workers are not listed: every managed one is read.
	rep, by, reads = h.driftOf(res, tools.DriftScope{AccountID: acct})
	if rep.Managed != 1 || rep.Listed || reads != 1 || by["w-1"].State != tools.DriftInSync {
		t.Errorf("ordinary Workers: %+v with %d reads, want w-1 read and in sync", rep, reads)
	}
	// A listing that fails: noted, and every managed script read.
	h.emu.FailNext(1, 403, 10000, 0, cfapi.EPListScripts)
	rep, _, reads = h.driftOf(res, ns)
	if rep.Listed || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "listing namespace customers failed") || reads != 4 {
		t.Errorf("failed listing: %+v with %d reads, want a note and 4 reads", rep, reads)
	}
	if d := rep.Scripts[2]; d.State != tools.DriftError || !strings.Contains(d.Error, "reading live bindings") || rep.Errors != 1 {
		t.Errorf("t-3 without a listing = %+v (errors %d), want an error reading it", d, rep.Errors)
	}
}
