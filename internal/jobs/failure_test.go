package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// TestBadInputCatalogue: each kind of bad input lands in the dead-letter
// stream with its reason, secret texts redacted, and the consumer keeps
// going (a good event published after them all still applies).
func TestBadInputCatalogue(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-ok")
	rn := h.startRunner("r1")
	const secret = "sk_live_DO_NOT_LEAK"
	good := func(id string) map[string]any {
		return newEvent(id, "customers", "tenant-ok", 1, "patch", map[string]any{"upsert": []any{b(`{"type":"plain_text","name":"A","text":"1"}`)}})
	}
	subj := "bindings." + acct + ".customers.tenant-bad"
	cases := []struct {
		name    string
		reason  event.Reason
		subject string
		body    string
	}{
		{"invalid JSON", event.ReasonInvalidJSON, subj, `{"schema": "bindings.change/v1", "id": "x1", ` + `"text":"` + secret + `"`},
		{"not an object", event.ReasonInvalidJSON, subj, `["a"]`},
		{"wrong schema", event.ReasonSchema, subj, `{"schema":"bindings.change/v9","id":"x2","account_id":"` + acct + `","dispatch_namespace":"customers","script":"tenant-bad","op":"patch","remove":["A"]}`},
		{"missing id", event.ReasonMissingField, subj, `{"schema":"bindings.change/v1","account_id":"` + acct + `","dispatch_namespace":"customers","script":"tenant-bad","op":"patch","remove":["A"]}`},
		{"missing op", event.ReasonMissingField, subj, `{"schema":"bindings.change/v1","id":"x3","account_id":"` + acct + `","dispatch_namespace":"customers","script":"tenant-bad"}`},
		{"unknown op", event.ReasonInvalidField, subj, `{"schema":"bindings.change/v1","id":"x4","account_id":"` + acct + `","dispatch_namespace":"customers","script":"tenant-bad","op":"merge"}`},
		{"wrong type", event.ReasonInvalidField, subj, `{"schema":"bindings.change/v1","id":"x5","account_id":"` + acct + `","dispatch_namespace":"customers","script":"tenant-bad","op":"patch","generation":"seven","remove":["A"]}`},
		{"invalid binding, secret redacted", event.ReasonInvalidBinding, subj, `{"schema":"bindings.change/v1","id":"x6","account_id":"` + acct + `","dispatch_namespace":"customers","script":"tenant-bad","op":"replace","bindings":[{"type":"secret_text","name":"OK_SECRET","text":"` + secret + `"},{"type":"kv_namespace","name":"NO_ID"}]}`},
		{"subject mismatch", event.ReasonSubjectMismatch, "bindings." + acct + ".customers.other", `{"schema":"bindings.change/v1","id":"x7","account_id":"` + acct + `","dispatch_namespace":"customers","script":"tenant-bad","op":"patch","remove":["A"]}`},
		{"oversize body", event.ReasonTooLarge, subj, `{"schema":"bindings.change/v1","id":"x8","pad":"` + strings.Repeat("x", event.MaxEventBytes) + `"}`},
	}
	for i, c := range cases {
		h.publishRaw(c.subject, []byte(c.body), fmt.Sprintf("bad-%d", i))
	}
	// Unknown dispatch namespace: valid event, the API answers 404.
	h.publish(newEvent("x9", "no-such-namespace", "tenant-x", 1, "replace", map[string]any{"bindings": []any{
		b(`{"type":"secret_text","name":"S","text":"` + secret + `"}`)}}))
	h.publish(good("good-after"))
	h.waitDrained(30 * time.Second)

	if got := h.stored("customers", "tenant-ok"); got["A"] == "" {
		t.Fatalf("the good event after the bad ones was not applied: %v", got)
	}
	dl := h.deadLetters()
	byReason := map[event.Reason][]state.DeadLetter{}
	for _, e := range dl {
		byReason[e.Record.Reason] = append(byReason[e.Record.Reason], e.Record)
		raw, _ := json.Marshal(e.Record)
		if strings.Contains(string(raw), secret) {
			t.Errorf("dead letter leaks a secret: %s", raw)
		}
		if e.Record.Error == "" || e.Record.FailedAt.IsZero() || e.Record.Subject == "" || e.Record.Attempts < 1 {
			t.Errorf("incomplete dead letter: %+v", e.Record)
		}
	}
	for _, c := range cases {
		if len(byReason[c.reason]) == 0 {
			t.Errorf("%s: no dead letter with reason %q (have %v)", c.name, c.reason, reasons(dl))
		}
	}
	if len(byReason["not_found"]) != 1 {
		t.Errorf("unknown namespace: want one not_found dead letter, have %v", reasons(dl))
	}
	if len(dl) != len(cases)+1 {
		t.Errorf("dead letters = %d, want %d: %v", len(dl), len(cases)+1, reasons(dl))
	}
	// The invalid binding record keeps the event, with the secret redacted.
	for _, r := range byReason[event.ReasonInvalidBinding] {
		if !strings.Contains(string(r.Event), `"<redacted>"`) || !strings.Contains(r.Error, "NO_ID") || !strings.Contains(r.Error, "namespace_id") {
			t.Errorf("invalid binding record: event=%s error=%s", r.Event, r.Error)
		}
	}
	// A body that is not JSON is not stored at all, only its digest.
	for _, r := range byReason[event.ReasonInvalidJSON] {
		if string(r.Event) != "null" && !strings.HasPrefix(string(r.Event), "[") {
			t.Errorf("invalid JSON record stores the body: %s", r.Event)
		}
	}
	if got := sumOf(rn.m.DeadLetters, event.ReasonLabels()...); int(got) != len(dl) {
		t.Errorf("dead letter metric = %v, want %d", got, len(dl))
	}
}

func reasons(dl []tools.DLQEntry) []string {
	var out []string
	for _, e := range dl {
		out = append(out, string(e.Record.Reason))
	}
	return out
}

// TestDLQReplay: a dead letter whose cause has been fixed is replayed from
// the original event (secrets intact) and applies.
func TestDLQReplay(t *testing.T) {
	// With a generation, and without one (whose replay was once taken for
	// a delivery again of an event already folded).
	for _, gen := range []uint64{1, 0} {
		t.Run(fmt.Sprintf("generation %d", gen), func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			h.startRunner("r1")
			// The script does not exist yet: 404, dead-lettered.
			h.publish(newEvent("late-1", "customers", "tenant-late", gen, "replace", map[string]any{"bindings": []any{
				b(`{"type":"secret_text","name":"S","text":"replayed-secret"}`)}}))
			h.waitDrained(20 * time.Second)
			dl := h.deadLetters()
			if len(dl) != 1 || dl[0].Record.Reason != "not_found" {
				t.Fatalf("dead letters = %+v", dl)
			}
			h.seedScript("customers", "tenant-late")
			res := tools.ReplayDeadLetter(context.Background(), h.js, state.Names{}, dl[0], true)
			if res.Error != "" || res.Source != "original" {
				t.Fatalf("replay = %+v", res)
			}
			h.waitDrained(20 * time.Second)
			if got := h.stored("customers", "tenant-late")["S"]; !strings.Contains(got, "replayed-secret") {
				t.Fatalf("replayed event not applied: %s", got)
			}
			if left := h.deadLetters(); len(left) != 0 {
				t.Fatalf("replayed dead letter not removed: %+v", left)
			}
		})
	}
}

// TestCrashAndRestart: the reconciler and its NATS server die mid-run
// (no drain, no acks); after a restart on the same store every script
// converges and nothing is lost.
func TestCrashAndRestart(t *testing.T) {
	h := newHarness(t, harnessOpts{
		emu: cfapitest.Options{Faults: cfapitest.Faults{WriteLatency: 150 * time.Millisecond}},
		cfg: Config{SetupConfig: state.SetupConfig{AckWait: 2 * time.Second}, Concurrency: 2},
	})
	const scripts = 10
	for s := 0; s < scripts; s++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", s))
	}
	h.setup()
	for s := 0; s < scripts; s++ {
		for g := 1; g <= 5; g++ {
			h.publish(newEvent(fmt.Sprintf("c-%d-%d", s, g), "customers", fmt.Sprintf("tenant-%d", s), uint64(g), "patch", map[string]any{
				"upsert": []any{b(fmt.Sprintf(`{"type":"plain_text","name":"V%d","text":"%d"}`, g, g))}}))
		}
	}
	rn := h.startRunner("before-crash")
	// Let some work happen, then crash while writes are in flight.
	h.eventually("some writes", 20*time.Second, func() (bool, string) {
		st := h.emu.Stats()
		return st.Writes >= 2, fmt.Sprint(st.Writes)
	})
	h.crash(rn)
	writesBefore := h.emu.Stats().Writes
	t.Logf("writes before the crash: %d of %d scripts", writesBefore, scripts)
	if writesBefore >= scripts {
		t.Errorf("every script was written before the crash; the test did not crash mid-run")
	}

	h.startServer() // same store directory and port
	h.startRunner("after-crash")
	h.waitDrained(60 * time.Second)
	for s := 0; s < scripts; s++ {
		got := h.stored("customers", fmt.Sprintf("tenant-%d", s))
		if len(got) != 5 {
			t.Errorf("tenant-%d after restart: %v", s, keys(got))
		}
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// TestTwoRunnersShareWork: two runners on one NATS share the work, all
// scripts converge, and the emulator never sees two overlapping writes to
// one script.
func TestTwoRunnersShareWork(t *testing.T) {
	h := newHarness(t, harnessOpts{
		emu: cfapitest.Options{Faults: cfapitest.Faults{WriteLatency: 20 * time.Millisecond}},
		cfg: Config{Concurrency: 4, CoalesceDelay: time.Millisecond, FetchBatch: 8},
	})
	const scripts = 6
	for s := 0; s < scripts; s++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", s))
	}
	r1 := h.startRunner("r1")
	r2 := h.startRunner("r2")
	var wg sync.WaitGroup
	for s := 0; s < scripts; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			for g := 1; g <= 15; g++ {
				h.publish(newEvent(fmt.Sprintf("two-%d-%d", s, g), "customers", fmt.Sprintf("tenant-%d", s), uint64(g), "patch", map[string]any{
					"upsert": []any{b(fmt.Sprintf(`{"type":"plain_text","name":"V","text":"%d"}`, g)),
						b(fmt.Sprintf(`{"type":"plain_text","name":"N%d","text":"x"}`, g))}}))
			}
		}(s)
	}
	wg.Wait()
	h.waitDrained(60 * time.Second)
	for s := 0; s < scripts; s++ {
		got := h.stored("customers", fmt.Sprintf("tenant-%d", s))
		if got["V"] != canon(`{"type":"plain_text","name":"V","text":"15"}`) || len(got) != 16 {
			t.Errorf("tenant-%d: V=%s, %d bindings", s, got["V"], len(got))
		}
	}
	st := h.emu.Stats()
	if st.OverlappingWrites != 0 {
		t.Fatalf("overlapping writes to one script: %d", st.OverlappingWrites)
	}
	w1, w2 := sumOf(r1.m.ReconcileTotal, allResults...), sumOf(r2.m.ReconcileTotal, allResults...)
	t.Logf("reconciles: r1=%v r2=%v; writes=%d reads=%d", w1, w2, st.Writes, st.Reads)
	if w1 == 0 || w2 == 0 {
		t.Errorf("one runner did no work (r1=%v r2=%v)", w1, w2)
	}
}

// TestResyncRepairsDrift: a binding changed outside the reconciler is
// repaired by a resync, with no event.
func TestResyncRepairsDrift(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-1")
	rn := h.startRunner("r1")
	h.publish(newEvent("d1", "customers", "tenant-1", 1, "replace", map[string]any{"bindings": []any{
		b(`{"type":"kv_namespace","name":"KV","namespace_id":"right"}`)}}))
	h.waitDrained(20 * time.Second)
	// Someone edits the script by hand.
	sc, _ := h.emu.Script(acct, "customers", "tenant-1")
	h.seedScript("customers", "tenant-1", `{"type":"kv_namespace","name":"KV","namespace_id":"wrong"}`)
	_ = sc
	if n, err := rn.r.Resync(context.Background()); err != nil || n != 1 {
		t.Fatalf("resync queued %d, %v", n, err)
	}
	h.eventually("drift repaired", 20*time.Second, func() (bool, string) {
		got := h.stored("customers", "tenant-1")["KV"]
		return strings.Contains(got, `"right"`), got
	})
}

// TestConsumerRecreatedAfterDeletion: when the durable consumer disappears
// (deleted by an operator, lost in a restart), the runner recreates it and
// keeps consuming, resuming after the last acknowledged event instead of
// delivering the whole stream again.
func TestConsumerRecreatedAfterDeletion(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const before = 20
	for i := 0; i < before; i++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", i))
	}
	rn := h.startRunner("r1")
	for i := 0; i < before; i++ {
		h.publish(newEvent(fmt.Sprintf("before-%d", i), "customers", fmt.Sprintf("tenant-%d", i), 1, "patch",
			map[string]any{"upsert": []any{b(`{"type":"plain_text","name":"A","text":"1"}`)}}))
	}
	h.waitDrained(20 * time.Second)
	h.eventually("the runner saw the ack floor", 10*time.Second, func() (bool, string) {
		return rn.r.ackFloor.Load() >= before, fmt.Sprint(rn.r.ackFloor.Load())
	})
	received := promtestutil.ToFloat64(rn.m.EventsReceived)
	if err := h.js.DeleteConsumer(context.Background(), "BINDINGS", "reconciler"); err != nil {
		t.Fatal(err)
	}
	h.eventually("consumer recreated", 30*time.Second, func() (bool, string) {
		_, err := h.js.Consumer(context.Background(), "BINDINGS", "reconciler")
		return err == nil, fmt.Sprint(err)
	})
	h.publish(newEvent("after", "customers", "tenant-1", 2, "patch", map[string]any{"upsert": []any{b(`{"type":"plain_text","name":"B","text":"2"}`)}}))
	h.eventually("event after recreation applied", 30*time.Second, func() (bool, string) {
		got := h.stored("customers", "tenant-1")
		return got["B"] != "", fmt.Sprint(keys(got))
	})
	if n := promtestutil.ToFloat64(rn.m.EventsReceived) - received; n != 1 {
		t.Errorf("%v events delivered after the recreation, want 1: the stream was delivered again", n)
	}
}

// TestExhaustedDeliveriesAreDeadLettered: an event whose deliveries all
// timed out (a process that died holding it, twice) is given up by
// JetStream with only an advisory; the runner turns that into a dead
// letter, with the secret redacted, so nothing is dropped silently.
func TestExhaustedDeliveriesAreDeadLettered(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: Config{SetupConfig: state.SetupConfig{MaxDeliver: 2, AckWait: time.Second}}})
	h.seedScript("customers", "tenant-1")
	res := h.setup()
	h.publish(newEvent("doomed", "customers", "tenant-1", 1, "patch", map[string]any{"upsert": []any{
		b(`{"type":"secret_text","name":"S","text":"never-in-dlq"}`)}}))
	// Two deliveries that are never acknowledged: the second fetch waits
	// for the redelivery after AckWait.
	for i := 0; i < 2; i++ {
		batch, err := res.Consumer.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range batch.Messages() {
			n++
		}
		if n != 1 {
			t.Fatalf("delivery %d: got %d messages", i+1, n)
		}
	}
	h.startRunner("r1")
	h.eventually("dead letter for the exhausted event", 20*time.Second, func() (bool, string) {
		dl := h.deadLetters()
		return len(dl) == 1, fmt.Sprint(reasons(dl))
	})
	rec := h.deadLetters()[0].Record
	if rec.Reason != "max_deliveries" || rec.EventID != "doomed" || rec.Attempts != 2 || strings.Contains(string(rec.Event), "never-in-dlq") {
		t.Fatalf("record = %+v (event %s)", rec, rec.Event)
	}
}

// TestResyncReadsOnlyModifiedScripts: with the namespace listing,
// a resync reads only the scripts whose modified_on moved since a read
// found them converged; the first resync records it, the second costs the
// list page alone, and a script edited by hand is read and repaired.
func TestResyncReadsOnlyModifiedScripts(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	const n = 5
	for i := 0; i < n; i++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", i))
	}
	rn := h.startRunner("r1")
	for i := 0; i < n; i++ {
		h.publish(newEvent(fmt.Sprintf("rs-%d", i), "customers", fmt.Sprintf("tenant-%d", i), 1, "replace", map[string]any{"bindings": []any{
			b(`{"type":"kv_namespace","name":"KV","namespace_id":"right"}`)}}))
	}
	h.waitDrained(20 * time.Second)
	gets := func() int {
		total := 0
		for _, c := range h.emu.Stats().Requests["get_settings"] {
			total += c
		}
		return total
	}
	resync := func(want int) {
		t.Helper()
		before := gets()
		if _, err := rn.r.Resync(context.Background()); err != nil {
			t.Fatal(err)
		}
		h.eventually("resync reads done", 20*time.Second, func() (bool, string) {
			return gets()-before == want && rn.r.queue.Pending()[laneBackfill] == 0, fmt.Sprint(gets() - before)
		})
	}
	resync(n) // no listing recorded yet: every script is read once
	resync(0) // untouched since: the list page alone
	h.seedScript("customers", "tenant-3", `{"type":"kv_namespace","name":"KV","namespace_id":"wrong"}`)
	resync(1)
	h.eventually("drift repaired", 20*time.Second, func() (bool, string) {
		got := h.stored("customers", "tenant-3")["KV"]
		return strings.Contains(got, `"right"`), got
	})
}
