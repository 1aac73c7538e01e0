package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/backfill"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/testutil"
)

// runBackfill enqueues one backfill item per event as run id and returns
// the results by script once every script has one.
func (h *harness) runBackfill(id string, events ...map[string]any) map[string]state.BackfillResult {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := state.Open(ctx, h.js, h.cfg.SetupConfig.Names)
	if err != nil {
		h.t.Fatal(err)
	}
	run, _, err := backfill.Open(ctx, res, state.BackfillRun{ID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	var items []backfill.Item
	for _, ev := range events {
		data, _ := json.Marshal(ev)
		ns, _ := ev["dispatch_namespace"].(string)
		items = append(items, backfill.Item{Ref: cfapi.ScriptRef{AccountID: acct, Namespace: ns, Script: ev["script"].(string)}, Event: data})
	}
	if _, _, err := run.Enqueue(ctx, items); err != nil {
		h.t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]state.BackfillResult{}
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = run.Follow(fctx, nil, func(r state.BackfillResult) bool {
			mu.Lock()
			defer mu.Unlock()
			got[r.Script] = r
			return len(got) < len(events)
		})
	}()
	testutil.Eventually(h.t, 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == len(events)
	}, "every backfill script has a result")
	mu.Lock()
	defer mu.Unlock()
	out := map[string]state.BackfillResult{}
	for k, v := range got {
		out[k] = v
	}
	return out
}

// TestBackfillRemovalIsAChange: a backfill replace whose only change is
// removing a binding the reconciler applied earlier counts the script as
// changed, like one that adds a binding; a replace asking for what is live
// counts unchanged.
func TestBackfillRemovalIsAChange(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for _, s := range []string{"removes", "adds", "same"} {
		h.seedScript("customers", s)
	}
	h.startRunner("r1")
	for _, s := range []string{"removes", "adds", "same"} {
		h.publish(newEvent("live-"+s, "customers", s, 1, "replace", map[string]any{"bindings": []any{
			b(`{"type":"plain_text","name":"A","text":"1"}`), b(`{"type":"plain_text","name":"B","text":"1"}`)}}))
	}
	h.waitDrained(30 * time.Second)
	results := h.runBackfill("count-removals",
		newEvent("bf-removes", "customers", "removes", 2, "replace", map[string]any{"bindings": []any{
			b(`{"type":"plain_text","name":"A","text":"1"}`)}}),
		newEvent("bf-adds", "customers", "adds", 2, "replace", map[string]any{"bindings": []any{
			b(`{"type":"plain_text","name":"A","text":"1"}`), b(`{"type":"plain_text","name":"B","text":"1"}`),
			b(`{"type":"plain_text","name":"C","text":"1"}`)}}),
		newEvent("bf-same", "customers", "same", 2, "replace", map[string]any{"bindings": []any{
			b(`{"type":"plain_text","name":"A","text":"1"}`), b(`{"type":"plain_text","name":"B","text":"1"}`)}}))
	want := map[string]string{"removes": state.ResultChanged, "adds": state.ResultChanged, "same": state.ResultUnchanged}
	for s, w := range want {
		key := fmt.Sprintf("%s.customers.%s", acct, s)
		if got := results[key].Outcome; got != w {
			t.Errorf("%s: outcome %q, want %q", s, got, w)
		}
	}
	if got := h.stored("customers", "removes"); got["B"] != "" {
		t.Errorf("the removal was not carried out: %v", keys(got))
	}
}
