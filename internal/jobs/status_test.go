package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/backfill"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

const statusSecret = "tenant-0042-secret-value"

// statusOf is `reconciler status` on tenant-0042 of the customers namespace:
// its JSON and text, both checked never to hold the secret.
func (h *harness) statusOf(res *state.Resources, opts tools.StatusOptions) (*tools.ScriptStatus, string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := tools.ScriptStatusOf(ctx, res, h.client(cfapi.Hooks{}), h.planner,
		cfapi.ScriptRef{AccountID: acct, Namespace: "customers", Script: "tenant-0042"}, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	data, err := json.Marshal(st)
	if err != nil {
		h.t.Fatal(err)
	}
	var text bytes.Buffer
	if err := tools.WriteStatus(&text, st); err != nil {
		h.t.Fatal(err)
	}
	for _, out := range []string{string(data), text.String()} {
		if strings.Contains(out, statusSecret) {
			h.t.Fatalf("status shows the secret value:\n%s", out)
		}
	}
	return st, text.String()
}

// TestStatusAnswersWhyABindingIsMissing drives a script through writes,
// an unsettled event, a dead letter, a queued backfill item and another
// owner's lease, and checks that `status` shows each: desired state
// (secret masked), last-applied record, live bindings, the three-way plan,
// the history of writes (binding names and kinds of change, the events
// settled), the pending event, the holds and the dead letter.
func TestStatusAnswersWhyABindingIsMissing(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-0042", `{"type":"d1","name":"THEIR_DB","id":"4e1c28a9-90e4-41da-8b4b-6cf36e5abb29"}`)
	res := h.setup()
	rn := h.startRunner("r1")
	h.publish(newEvent("ev-1", "customers", "tenant-0042", 1, "patch", map[string]any{"upsert": []any{
		b(`{"type":"kv_namespace","name":"USER_KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`),
		b(`{"type":"plain_text","name":"PLAN","text":"free"}`),
		b(`{"type":"secret_text","name":"API_KEY","text":"` + statusSecret + `"}`),
	}}))
	h.waitDrained(20 * time.Second)
	h.publish(newEvent("ev-2", "customers", "tenant-0042", 2, "patch", map[string]any{
		"upsert": []any{b(`{"type":"plain_text","name":"PLAN","text":"pro"}`)},
		"remove": []any{"USER_KV"},
	}))
	h.waitDrained(20 * time.Second)
	// Not JSON at all: dead-lettered under the script's subject.
	h.publishRaw("bindings."+acct+".customers.tenant-0042", []byte("{not json"), "bad-1")
	h.waitDrained(20 * time.Second)

	st, text := h.statusOf(res, tools.StatusOptions{})
	if len(st.History) != 2 {
		t.Fatalf("history has %d entries, want 2:\n%s", len(st.History), text)
	}
	first, second := st.History[0], st.History[1]
	if got := first.ChangedNames(); !slices.Equal(got, []string{"API_KEY", "PLAN", "USER_KV"}) {
		t.Errorf("first write changed %v, want API_KEY, PLAN, USER_KV", got)
	}
	for _, c := range first.Changes {
		if c.Kind != state.ChangeAdd {
			t.Errorf("first write: %s is a %s, want add", c.Name, c.Kind)
		}
	}
	if !slices.Equal(first.EventIDs, []string{"ev-1"}) || first.Strategy != "settings" || first.Lane != "live" {
		t.Errorf("first write: events %v strategy %q lane %q, want [ev-1] settings live", first.EventIDs, first.Strategy, first.Lane)
	}
	kinds := map[string]string{}
	for _, c := range second.Changes {
		kinds[c.Name] = c.Kind
	}
	if len(kinds) != 2 || kinds["PLAN"] != state.ChangeUpdate || kinds["USER_KV"] != state.ChangeRemove {
		t.Errorf("second write changes %+v, want PLAN update and USER_KV remove", second.Changes)
	}
	if !slices.Equal(second.EventIDs, []string{"ev-2"}) || !second.At.After(first.At) && !second.At.Equal(first.At) {
		t.Errorf("second write: events %v at %v (first at %v)", second.EventIDs, second.At, first.At)
	}
	// The remove is carried out: it is recorded, never asked again.
	if st.Desired == nil || len(st.Desired.Bindings) != 2 || len(st.Desired.Remove) != 0 || !slices.Equal(st.Applied.Removed, []string{"USER_KV"}) {
		t.Fatalf("desired = %+v, applied removes %v, want API_KEY and PLAN, USER_KV removed", st.Desired, st.Applied.Removed)
	}
	if st.Applied.Bindings["API_KEY"] != "secret_text" || st.Applied.Bindings["PLAN"] != "plain_text" || len(st.Applied.Bindings) != 2 {
		t.Errorf("applied = %v, want API_KEY secret_text and PLAN plain_text", st.Applied.Bindings)
	}
	if !st.Live.Read || len(st.Live.Bindings) != 3 {
		t.Errorf("live = %+v, want 3 bindings read", st.Live)
	}
	if st.Plan == nil || !st.Plan.NoOp() {
		t.Errorf("plan = %v, want no changes", st.Plan)
	}
	if !st.Pending.Applied || len(st.Pending.Events) != 0 || len(st.Held) != 0 {
		t.Errorf("pending %+v held %+v, want nothing for an applied script", st.Pending, st.Held)
	}
	if len(st.DeadLetters) != 1 || st.DeadLetters[0].Record.Subject != "bindings."+acct+".customers.tenant-0042" {
		t.Errorf("dead letters = %+v, want the one unreadable event", st.DeadLetters)
	}
	for _, want := range []string{"history (newest last):", "settings add API_KEY, add PLAN, add USER_KV events ev-1",
		"settings update PLAN, remove USER_KV events ev-2", "dead letters (1", "held: no", "No changes."} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}

	// Stop the pipeline: a new event waits, a backfill item is queued,
	// and another process holds the lease.
	rn.stop(t)
	h.publish(newEvent("ev-3", "customers", "tenant-0042", 3, "patch", map[string]any{
		"upsert": []any{b(`{"type":"plain_text","name":"REGION","text":"eu"}`)}}))
	ctx := context.Background()
	run, _, err := backfill.Open(ctx, res, state.BackfillRun{ID: "ux-1", Source: "test"})
	if err != nil {
		t.Fatal(err)
	}
	item := newEvent("bf-1", "customers", "tenant-0042", 4, "patch", map[string]any{
		"upsert": []any{b(`{"type":"plain_text","name":"TIER","text":"gold"}`)}})
	data, _ := json.Marshal(item)
	if _, _, err := run.Enqueue(ctx, []backfill.Item{{Ref: cfapi.ScriptRef{AccountID: acct, Namespace: "customers", Script: "tenant-0042"}, Event: data}}); err != nil {
		t.Fatal(err)
	}
	ls, ok, err := state.AcquireLease(ctx, res.Leases, acct+".customers.tenant-0042", "other-host-7", 10*time.Second)
	if err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	defer ls.Release()

	st, text = h.statusOf(res, tools.StatusOptions{NoLive: true})
	// ev-3 is not folded (no runner takes it): it is the one unsettled event.
	if len(st.Pending.Events) != 1 || st.Pending.Events[0].ID != "ev-3" || st.Pending.Events[0].State != tools.PendingNotFolded {
		t.Errorf("pending = %+v, want ev-3 not folded", st.Pending)
	}
	if st.Live.Read || st.Plan != nil {
		t.Errorf("--no-live read the live bindings: %+v", st.Live)
	}
	holds := map[string]string{}
	for _, hd := range st.Held {
		holds[hd.Kind] = hd.Detail
	}
	if !strings.Contains(holds[tools.HoldLease], "other-host-7") || !strings.Contains(holds[tools.HoldBackfill], "ux-1") {
		t.Errorf("holds = %v, want the lease of other-host-7 and backfill run ux-1", holds)
	}
	if st.Pending.InStream != 4 {
		t.Errorf("events in stream = %d, want 4", st.Pending.InStream)
	}
	for _, want := range []string{"live: not read (--no-live)", "ev-3 patch not_folded", "lease: write lease held by other-host-7", "backfill: queued in backfill run ux-1"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
}
