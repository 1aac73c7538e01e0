package backfill

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/testutil"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

const acct = "023e105f4ecef8ad9ca31a8372d0c353"

func key(script string) string {
	return event.ScriptKey(cfapi.ScriptRef{AccountID: acct, Namespace: "customers", Script: script})
}

// recordView keeps what a tracker showed. The tracker calls it from the
// goroutine following the results and from the one reading the input.
type recordView struct {
	mu       sync.Mutex
	shown    []Progress
	finished int
}

func (v *recordView) Show(p Progress) { v.mu.Lock(); v.shown = append(v.shown, p); v.mu.Unlock() }
func (v *recordView) Finish()         { v.mu.Lock(); v.finished++; v.mu.Unlock() }

// TestTrackerCountsOnlyTheInput: results of scripts outside the input
// and results of another run are not counted; a script's later result
// replaces its earlier one; Done never passes Total.
func TestTrackerCountsOnlyTheInput(t *testing.T) {
	v := &recordView{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := NewTracker("run-a", v, func(requests float64) time.Duration { return time.Duration(requests) * time.Second }, func() time.Time { return now })
	tr.Result(state.BackfillResult{Run: "run-a", Script: key("a"), Outcome: state.ResultFailed, Error: "boom"})
	tr.Result(state.BackfillResult{Run: "run-a", Script: key("gone"), Outcome: state.ResultChanged}) // no longer in the input
	tr.Result(state.BackfillResult{Run: "run-b", Script: key("b"), Outcome: state.ResultChanged})    // another run
	if done := tr.Member(key("a")); !done {
		t.Error("a has a result: Member should say so")
	}
	if done := tr.Member(key("b")); done {
		t.Error("b has a result of another run only: Member should say it is not done")
	}
	tr.Member(key("c"))
	tr.Member(key("a")) // twice: counted once
	if p := tr.Progress(); !p.Counting || p.ETA != 0 {
		t.Errorf("progress while the input is read %+v: want Counting and no ETA", p)
	}
	tr.Counted()
	p := tr.Progress()
	if p.Done != 1 || p.Total != 3 || p.Totals.Failed != 1 || p.Totals.Changed != 0 {
		t.Fatalf("progress %+v, want 1 of 3 done (a failed)", p)
	}
	// Two scripts left, one read each: none of those done changed.
	if p.ETA != 2*time.Second {
		t.Errorf("ETA %s, want 2s (2 scripts × 1 request)", p.ETA)
	}
	tr.Result(state.BackfillResult{Run: "run-a", Script: key("a"), Outcome: state.ResultChanged}) // retried
	tr.Result(state.BackfillResult{Run: "run-a", Script: key("b"), Outcome: state.ResultUnchanged})
	tr.Result(state.BackfillResult{Run: "run-a", Script: key("c"), Outcome: state.ResultChanged})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Wait(ctx, 0); err != nil {
		t.Fatal(err)
	}
	s := tr.Summary()
	if s.Scripts != 3 || s.Changed != 2 || s.Unchanged != 1 || s.Failed != 0 || len(s.Failures) != 0 {
		t.Errorf("summary %+v, want 3 scripts: 2 changed, 1 unchanged", s)
	}
	for _, p := range v.shown {
		if p.Done > p.Total {
			t.Errorf("shown %d of %d", p.Done, p.Total)
		}
	}
	if v.finished != 1 {
		t.Errorf("view finished %d times", v.finished)
	}
}

// TestResumeCountsOnlyItsScripts: a run resumed while the results stream
// holds results of another run (same scripts and more) and results of
// scripts its input no longer lists counts only the scripts of its
// input, enqueues only those without a result, and finishes when they
// have one.
func TestResumeCountsOnlyItsScripts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, js := testutil.JetStream(t)
	res, err := state.EnsureStreams(ctx, js, state.SetupConfig{Replicas: 1, AckWait: time.Second, MaxDeliver: 3, LeaseTTL: time.Second}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	names := res.Names
	publish := func(run, script, outcome string) {
		data, _ := json.Marshal(state.BackfillResult{Run: run, Script: key(script), Outcome: outcome, At: time.Now().UTC()})
		if _, err := js.Publish(ctx, names.ResultsPrefix+"."+run+"."+key(script), data); err != nil {
			t.Fatal(err)
		}
	}
	var lines []string
	for _, s := range []string{"s1", "s2", "s3", "s4"} {
		lines = append(lines, fmt.Sprintf(`{"schema":"bindings.change/v1","id":"e-%[2]s","account_id":"%[1]s","dispatch_namespace":"customers","script":"%[2]s","op":"patch","upsert":[{"type":"plain_text","name":"K","text":"1"}]}`, acct, s))
	}
	src := EventsSource("events.jsonl", []byte(strings.Join(lines, "\n")+"\n"), "bindings")
	src.RunID = "run-a"
	// The first attempt of run-a got as far as s1 and s2, and a script
	// its input does not hold; run-b did all four and two more.
	if _, _, err := Open(ctx, res, state.BackfillRun{ID: "run-a", Source: src.Describe}); err != nil {
		t.Fatal(err)
	}
	publish("run-a", "s1", state.ResultChanged)
	publish("run-a", "s2", state.ResultFailed)
	publish("run-a", "s9", state.ResultChanged)
	for _, s := range []string{"s1", "s2", "s3", "s4", "s5", "s6"} {
		publish("run-b", s, state.ResultUnchanged)
	}
	// Play the pipeline: answer each item of run-a as changed.
	cons := res.BackfillConsumer
	enqueued := make(chan string, 10)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		parts := strings.SplitN(m.Subject(), ".", 3) // prefix.run.key
		enqueued <- parts[2]
		data, _ := json.Marshal(state.BackfillResult{Run: parts[1], Script: parts[2], Outcome: state.ResultChanged, At: time.Now().UTC()})
		if _, err := js.Publish(ctx, names.ResultsPrefix+"."+parts[1]+"."+parts[2], data); err != nil {
			t.Error(err)
		}
		_ = m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()

	v := &recordView{}
	sum, err := Execute(ctx, res, Options{Source: src, View: v})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Resumed || sum.Scripts != 4 || sum.Changed != 3 || sum.Failed != 1 || sum.Unchanged != 0 {
		t.Errorf("summary %+v, want the 4 scripts of the input: s1, s3, s4 changed, s2 failed", sum)
	}
	if len(sum.Failures) != 1 || sum.Failures[0].Script != key("s2") {
		t.Errorf("failures %+v, want s2 only", sum.Failures)
	}
	close(enqueued)
	var got []string
	for k := range enqueued {
		got = append(got, k)
	}
	if want := []string{key("s3"), key("s4")}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("enqueued %v, want %v (the scripts of the input without a result)", got, want)
	}
	for _, p := range v.shown {
		if p.Done > p.Total || p.Total > 4 {
			t.Errorf("shown %d of %d", p.Done, p.Total)
		}
	}
}
