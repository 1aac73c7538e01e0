package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/backfill"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// backfillItems builds one patch item per script of the customers
// namespace, the event id being the run id (as a namespace run does).
func backfillItems(t *testing.T, run string, scripts ...string) []backfill.Item {
	t.Helper()
	var out []backfill.Item
	for _, s := range scripts {
		ev := newEvent(run, "customers", s, 0, "patch", map[string]any{
			"upsert": []any{b(`{"type":"plain_text","name":"TIER","text":"gold"}`)}})
		data, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, backfill.Item{Ref: cfapi.ScriptRef{AccountID: acct, Namespace: "customers", Script: s}, Event: data})
	}
	return out
}

// TestBackfillCancelDropsQueuedItems: `backfill cancel` from another
// process drops the run's queued items, records it as cancelled, stops a
// process still enqueueing it, and refuses to resume it; `backfill status`
// shows the progress and an ETA from the rate so far.
func TestBackfillCancelDropsQueuedItems(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	res := h.setup()
	ctx := context.Background()
	in := state.BackfillRun{ID: "ux-1", Source: "namespace customers, patch tier.json", InputDigest: "aaaaaaaaaaaaaaaa1111"}
	run, resumed, err := backfill.Open(ctx, res, in)
	if err != nil || resumed {
		t.Fatalf("open: resumed %v, %v", resumed, err)
	}
	if q, _, err := run.Enqueue(ctx, backfillItems(t, "ux-1", "t-1", "t-2", "t-3", "t-4", "t-5")); err != nil || q != 5 {
		t.Fatalf("enqueue: %d queued, %v", q, err)
	}
	if err := run.SetTotal(ctx, 10); err != nil {
		t.Fatal(err)
	}
	// Two scripts have results (as runners record them).
	for _, s := range []string{"t-1", "t-2"} {
		r := state.BackfillResult{Run: "ux-1", Script: acct + ".customers." + s, Outcome: state.ResultChanged, At: time.Now().UTC()}
		data, _ := json.Marshal(r)
		m := nats.NewMsg("bindings_backfill_results.ux-1." + r.Script)
		m.Data = data
		if _, err := h.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	st, err := run.Status(ctx, run.Record.CreatedAt.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != backfill.StateRunning || st.Scripts != 2 || st.Changed != 2 || st.Remaining != 8 || st.Queued != 5 {
		t.Errorf("status = %+v, want running, 2 changed, 8 remaining, 5 queued", st)
	}
	if st.Rate != 0.2 || st.ETA != 40*time.Second {
		t.Errorf("rate %v ETA %v, want 0.2/s and 40s (8 left at 2 per 10s)", st.Rate, st.ETA)
	}

	dropped, err := backfill.Cancel(ctx, res, "ux-1", time.Now())
	if err != nil || dropped != 5 {
		t.Fatalf("cancel dropped %d, %v; want 5", dropped, err)
	}
	info, err := res.Backfill.Info(ctx)
	if err != nil || info.State.Msgs != 0 {
		t.Fatalf("backfill stream holds %d items after cancel (%v)", info.State.Msgs, err)
	}
	// The process that started the run stops enqueueing it.
	if _, _, err := run.Enqueue(ctx, backfillItems(t, "ux-1", "t-6")); !errors.Is(err, backfill.ErrCancelled) {
		t.Errorf("enqueue after cancel: %v, want ErrCancelled", err)
	}
	// SetTotal from that process keeps the cancel.
	if err := run.SetTotal(ctx, 11); err != nil {
		t.Fatal(err)
	}
	if _, _, err := backfill.Open(ctx, res, in); !errors.Is(err, backfill.ErrCancelled) {
		t.Errorf("resuming a cancelled run: %v, want ErrCancelled", err)
	}
	runs, err := backfill.List(ctx, res, time.Now())
	if err != nil || len(runs) != 1 || runs[0].State != backfill.StateCancelled || runs[0].Queued != 0 || runs[0].Record.Total != 11 {
		t.Fatalf("list = %+v (%v), want ux-1 cancelled with nothing queued and total 11", runs, err)
	}
	if _, _, err := backfill.LoadRun(ctx, res, "nope"); !errors.Is(err, backfill.ErrRunNotFound) {
		t.Errorf("status of an unknown run: %v", err)
	}
}

// TestBackfillRunIDReusedWithOtherInputIsRefused: a run id given again
// with another patch is refused with a message that says how the inputs
// differ (the events carry the run id, so the second patch would be
// taken for the first, already applied).
func TestBackfillRunIDReusedWithOtherInputIsRefused(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	res := h.setup()
	ctx := context.Background()
	first := state.BackfillRun{ID: "ux-1", Source: "namespace customers, patch a.json", InputDigest: "1111111111111111aaaa"}
	if _, _, err := backfill.Open(ctx, res, first); err != nil {
		t.Fatal(err)
	}
	if _, resumed, err := backfill.Open(ctx, res, first); err != nil || !resumed {
		t.Fatalf("same input again: resumed %v, %v; want a resume", resumed, err)
	}
	_, _, err := backfill.Open(ctx, res, state.BackfillRun{ID: "ux-1", Source: "namespace customers, patch b.json", InputDigest: "2222222222222222bbbb"})
	var mm *backfill.InputMismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("other input: %v, want an InputMismatchError", err)
	}
	for _, want := range []string{"ux-1", "patch a.json", "111111111111", "patch b.json", "222222222222", "another --run-id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %v", want, err)
		}
	}
}

// TestBackfillRetryFailedAndReplayItsDeadLetters: scripts that failed in
// a run (not found) are retried when the run is resumed (FailedScripts,
// Item.Retry: not dropped as duplicates), and a backfill item's dead
// letter is replayed as a live event of its script.
func TestBackfillRetryFailedAndReplayItsDeadLetters(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "t-1")
	res := h.setup()
	h.startRunner("r1")
	ctx := context.Background()
	run, _, err := backfill.Open(ctx, res, state.BackfillRun{ID: "ux-3", Source: "test", InputDigest: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := run.Enqueue(ctx, backfillItems(t, "ux-3", "t-1", "t-2", "t-3")); err != nil {
		t.Fatal(err)
	}
	if err := run.SetTotal(ctx, 3); err != nil {
		t.Fatal(err)
	}
	status := func() *backfill.RunStatus {
		st, err := run.Status(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	h.eventually("three results", 30*time.Second, func() (bool, string) {
		st := status()
		return st.Scripts == 3, fmt.Sprintf("%+v", st.Totals)
	})
	st := status()
	if st.Changed != 1 || st.Failed != 2 || st.State != backfill.StateFinished || len(st.Failures) != 2 {
		t.Fatalf("status = %+v, want 1 changed, 2 failed (not found), finished", st)
	}
	// The operator creates the missing scripts. t-2 is retried by a resume.
	h.seedScript("customers", "t-2")
	h.seedScript("customers", "t-3")
	failed, err := run.FailedScripts(ctx)
	if err != nil || len(failed) != 2 {
		t.Fatalf("failed scripts = %v, %v", failed, err)
	}
	r2 := failed[acct+".customers.t-2"]
	items := backfillItems(t, "ux-3", "t-2")
	items[0].Retry = &r2
	if q, _, err := run.Enqueue(ctx, items); err != nil || q != 1 {
		t.Fatalf("retry enqueue: %d queued, %v; want 1", q, err)
	}
	h.eventually("t-2 changed", 30*time.Second, func() (bool, string) {
		st := status()
		return st.Changed == 2, fmt.Sprintf("%+v", st.Totals)
	})
	if got := h.stored("customers", "t-2")["TIER"]; got != canon(`{"type":"plain_text","name":"TIER","text":"gold"}`) {
		t.Errorf("t-2 TIER = %s after the retry", got)
	}
	// t-3's dead letter is replayed as a live event.
	var dl *tools.DLQEntry
	for _, e := range h.deadLetters() {
		if strings.HasSuffix(e.Record.Subject, ".t-3") {
			dl = &e
		}
	}
	if dl == nil || !strings.HasPrefix(dl.Record.Subject, "bindings_backfill.ux-3.") {
		t.Fatalf("no backfill dead letter for t-3: %+v", h.deadLetters())
	}
	rr := tools.ReplayDeadLetter(ctx, h.js, res.Names, *dl, true)
	if rr.Error != "" || rr.Subject != "bindings."+acct+".customers.t-3" {
		t.Fatalf("replay = %+v, want the live subject of t-3", rr)
	}
	h.waitDrained(30 * time.Second)
	if got := h.stored("customers", "t-3")["TIER"]; got != canon(`{"type":"plain_text","name":"TIER","text":"gold"}`) {
		t.Errorf("t-3 TIER = %s after the replay", got)
	}
}
