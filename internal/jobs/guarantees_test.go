package jobs

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/metrics"
)

// apiFunc wraps an API and replaces some of its calls.
type apiFunc struct {
	API
	getSettings   func(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error)
	patchSettings func(ctx context.Context, ref cfapi.ScriptRef, p cfapi.SettingsPatch) (*cfapi.Settings, error)
}

func (a apiFunc) GetSettings(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error) {
	if a.getSettings != nil {
		return a.getSettings(ctx, ref)
	}
	return a.API.GetSettings(ctx, ref)
}

func (a apiFunc) PatchSettings(ctx context.Context, ref cfapi.ScriptRef, p cfapi.SettingsPatch) (*cfapi.Settings, error) {
	if a.patchSettings != nil {
		return a.patchSettings(ctx, ref, p)
	}
	return a.API.PatchSettings(ctx, ref, p)
}

// sentAny reports whether any request body sent so far mentions s.
func (h *harness) sentAny(s string) bool {
	for _, b := range h.sentBodies() {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

// TestBadPatchDoesNotBlockTheScript: a patch that can never
// apply (an inherit of a binding that does not exist) folded together with
// a good patch: the good one is applied, the bad one is dead-lettered,
// nothing of it is ever written, and later events keep converging.
func TestBadPatchDoesNotBlockTheScript(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-1")
	h.setup()
	h.publish(newEvent("bad", "customers", "tenant-1", 1, "patch", map[string]any{"upsert": []any{
		b(`{"type":"inherit","name":"MISSING_BINDING"}`)}}))
	h.publish(newEvent("good", "customers", "tenant-1", 2, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"GOOD","text":"yes"}`)}}))
	h.startRunner("r1")
	h.waitDrained(30 * time.Second)
	if got := h.stored("customers", "tenant-1"); got["GOOD"] == "" {
		t.Fatalf("the good patch was not applied: %v", keys(got))
	}
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Record.EventID != "bad" || dl[0].Record.Reason != event.ReasonInvalidDesired {
		t.Fatalf("dead letters = %+v", dl)
	}
	// A later unrelated event applies, and still never writes the bad one.
	h.publish(newEvent("later", "customers", "tenant-1", 3, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"LATER","text":"yes"}`)}}))
	h.waitDrained(30 * time.Second)
	if got := h.stored("customers", "tenant-1"); got["LATER"] == "" {
		t.Fatalf("a later event was blocked: %v", keys(got))
	}
	if h.sentAny("MISSING_BINDING") {
		t.Fatal("the bad operation was sent to the API")
	}
	if n := len(h.deadLetters()); n != 1 {
		t.Fatalf("dead letters = %d, want 1", n)
	}
}

// TestAPIRejectionBlamesTheNamedBinding: the API rejects a
// write with 10021 naming one binding; only the event that set it is
// dead-lettered, the other event folded with it is applied.
func TestAPIRejectionBlamesTheNamedBinding(t *testing.T) {
	h := newHarness(t, harnessOpts{wrapAPI: func(api API) API {
		return apiFunc{API: api, patchSettings: func(ctx context.Context, ref cfapi.ScriptRef, p cfapi.SettingsPatch) (*cfapi.Settings, error) {
			if _, ok := p.Bindings.ByName("DB"); ok {
				return nil, &cfapi.APIError{StatusCode: 400, Method: "PATCH", Path: "/settings",
					Errors: []cfapi.ErrorDetail{{Code: cfapi.CodeValidation, Message: "binding DB of type d1 must have a valid `id` specified"}}}
			}
			return api.PatchSettings(ctx, ref, p)
		}}
	}})
	h.seedScript("customers", "tenant-1")
	h.setup()
	h.publish(newEvent("rejected", "customers", "tenant-1", 1, "patch", map[string]any{"upsert": []any{
		b(`{"type":"d1","name":"DB","id":"00000000-0000-0000-0000-000000000000"}`)}}))
	h.publish(newEvent("fine", "customers", "tenant-1", 2, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"FINE","text":"ok"}`)}}))
	h.startRunner("r1")
	h.waitDrained(30 * time.Second)
	got := h.stored("customers", "tenant-1")
	if got["FINE"] == "" || got["DB"] != "" {
		t.Fatalf("stored = %v, want FINE and no DB", keys(got))
	}
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Record.EventID != "rejected" || dl[0].Record.Reason != event.ReasonAPIRejected ||
		!strings.Contains(dl[0].Record.Error, "10021") {
		t.Fatalf("dead letters = %+v", dl)
	}
}

// TestRemoveNeverDeletesWhatItDoesNotOwn: after a patch's
// remove was carried out, a binding of that name created again by hand is
// not deleted by a later, unrelated event.
func TestRemoveNeverDeletesWhatItDoesNotOwn(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-1", `{"type":"plain_text","name":"X","text":"theirs"}`)
	h.startRunner("r1")
	h.publish(newEvent("rm", "customers", "tenant-1", 1, "patch", map[string]any{"remove": []any{"X"}}))
	h.waitDrained(20 * time.Second)
	if got := h.stored("customers", "tenant-1"); got["X"] != "" {
		t.Fatalf("X was not removed: %v", keys(got))
	}
	// Someone creates X again by hand.
	h.seedScript("customers", "tenant-1", `{"type":"plain_text","name":"X","text":"made again"}`)
	h.publish(newEvent("unrelated", "customers", "tenant-1", 2, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"Y","text":"y"}`)}}))
	h.waitDrained(20 * time.Second)
	got := h.stored("customers", "tenant-1")
	if got["Y"] == "" || !strings.Contains(got["X"], "made again") {
		t.Fatalf("stored = %v: the re-created X was deleted again", got)
	}
}

// TestAuthFailurePausesWithoutDeadLetters: while the API
// rejects the credentials, nothing is dead-lettered, readiness fails, and
// the events apply once the credentials work again.
func TestAuthFailurePausesWithoutDeadLetters(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: Config{AuthPause: 100 * time.Millisecond}})
	for i := 0; i < 3; i++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", i))
	}
	h.emu.FailNext(6, 403, cfapi.CodeAuthentication, 0)
	rn := h.startRunner("r1")
	for i := 0; i < 3; i++ {
		h.publish(newEvent(fmt.Sprintf("auth-%d", i), "customers", fmt.Sprintf("tenant-%d", i), 1, "patch", map[string]any{
			"upsert": []any{b(`{"type":"plain_text","name":"A","text":"1"}`)}}))
	}
	var sawNotReady atomic.Bool
	h.eventually("all applied after the credentials work again", 90*time.Second, func() (bool, string) {
		if rn.r.Ready() != nil {
			sawNotReady.Store(true)
		}
		n := 0
		for i := 0; i < 3; i++ {
			if h.stored("customers", fmt.Sprintf("tenant-%d", i))["A"] != "" {
				n++
			}
		}
		return n == 3, fmt.Sprint(n)
	})
	h.waitDrained(20 * time.Second)
	if !sawNotReady.Load() {
		t.Error("readiness never reported the auth failure")
	}
	if rn.r.Ready() != nil {
		t.Errorf("still not ready: %v", rn.r.Ready())
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("auth failures dead-lettered events: %+v", dl)
	}
	if n := promtestutil.ToFloat64(rn.m.APIAuthFailures); n < 1 {
		t.Errorf("auth failures metric = %v", n)
	}
}

// TestPanicInReconcileIsRecovered: a panic while reconciling
// one script is recovered and counted; the event is redelivered and
// applied, and the other scripts are not affected.
func TestPanicInReconcileIsRecovered(t *testing.T) {
	var panicked atomic.Bool
	h := newHarness(t, harnessOpts{wrapAPI: func(api API) API {
		return apiFunc{API: api, getSettings: func(ctx context.Context, ref cfapi.ScriptRef) (*cfapi.Settings, error) {
			if ref.Script == "tenant-panic" && panicked.CompareAndSwap(false, true) {
				var bs []wire.Binding
				_ = bs[len(ref.Script)] // an index out of range: a real runtime panic
			}
			return api.GetSettings(ctx, ref)
		}}
	}})
	h.seedScript("customers", "tenant-panic")
	h.seedScript("customers", "tenant-ok")
	rn := h.startRunner("r1")
	for _, s := range []string{"tenant-panic", "tenant-ok"} {
		h.publish(newEvent("p-"+s, "customers", s, 1, "patch", map[string]any{"upsert": []any{b(`{"type":"plain_text","name":"A","text":"1"}`)}}))
	}
	h.waitDrained(30 * time.Second)
	for _, s := range []string{"tenant-panic", "tenant-ok"} {
		if h.stored("customers", s)["A"] == "" {
			t.Errorf("%s not applied", s)
		}
	}
	if n := promtestutil.ToFloat64(rn.m.PanicsRecovered); n != 1 {
		t.Errorf("panics recovered = %v, want 1", n)
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// TestInvalidUTF8IsRejected: an event with invalid UTF-8 in a
// binding value is dead-lettered at decode and never sent.
func TestInvalidUTF8IsRejected(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-1")
	h.startRunner("r1")
	body := `{"schema":"bindings.change/v1","id":"utf","account_id":"` + acct + `","dispatch_namespace":"customers","script":"tenant-1","op":"patch","upsert":[{"type":"plain_text","name":"A","text":"bad` + "\xff\xfe" + `"}]}`
	h.publishRaw("bindings."+acct+".customers.tenant-1", []byte(body), "utf")
	h.waitDrained(20 * time.Second)
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Record.Reason != event.ReasonInvalidJSON || !strings.Contains(dl[0].Record.Error, "UTF-8") {
		t.Fatalf("dead letters = %+v", dl)
	}
	if h.emu.Stats().Writes != 0 {
		t.Fatal("an invalid event was written")
	}
}

// TestOneMiBServer: against a NATS with the default 1 MiB
// max_payload, a patch that would grow the stored desired state past what
// one message carries is rejected (too_large) while the earlier one
// applies, and a dead letter too large for one message is stored shrunk
// to its digest and stream sequence.
func TestOneMiBServer(t *testing.T) {
	h := newHarness(t, harnessOpts{natsDefaults: true})
	h.seedScript("customers", "tenant-1")
	h.setup()
	patch := func(id string, gen uint64, prefix string) map[string]any {
		var ups []any
		for i := 0; i < 130; i++ {
			ups = append(ups, map[string]any{"type": "plain_text", "name": fmt.Sprintf("%s%03d", prefix, i), "text": strings.Repeat("v", 4000)})
		}
		return newEvent(id, "customers", "tenant-1", gen, "patch", map[string]any{"upsert": ups})
	}
	h.publish(patch("first", 1, "A"))
	h.publish(patch("second", 2, "B"))
	// An invalid event of almost 1 MiB: its dead letter does not fit.
	huge := newEvent("huge", "customers", "tenant-1", 3, "patch", map[string]any{"upsert": []any{
		map[string]any{"type": "plain_text", "name": "HUGE", "text": strings.Repeat("h", 1045000)}}})
	h.publish(huge)
	h.startRunner("r1")
	h.waitDrained(60 * time.Second)
	got := h.stored("customers", "tenant-1")
	if got["A000"] == "" || got["B000"] != "" || got["HUGE"] != "" {
		t.Fatalf("stored: A000=%t B000=%t HUGE=%t", got["A000"] != "", got["B000"] != "", got["HUGE"] != "")
	}
	byID := map[string]state.DeadLetter{}
	for _, e := range h.deadLetters() {
		byID[e.Record.EventID] = e.Record
	}
	if r, ok := byID["second"]; !ok || r.Reason != event.ReasonTooLarge {
		t.Errorf("second: reason %q, error %q", r.Reason, r.Error)
	}
	r, ok := byID["huge"]
	if !ok || r.Reason != event.ReasonInvalidBinding || string(r.Event) != "null" || r.BodySHA256 == "" || r.StreamSeq == 0 {
		t.Errorf("huge: reason=%s event=%.40s sha=%q seq=%d", r.Reason, r.Event, r.BodySHA256, r.StreamSeq)
	}
	if len(byID) != 2 {
		t.Errorf("dead letters: %v", keysOf(byID))
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestRecoveryAfterCrashBeforeAckWait: killed mid-run and
// restarted at once, the reconciler converges the scripts whose events the
// dead process held well before their AckWait (60s here) redelivers them,
// with no extra writes.
func TestRecoveryAfterCrashBeforeAckWait(t *testing.T) {
	h := newHarness(t, harnessOpts{
		emu: cfapitest.Options{Faults: cfapitest.Faults{WriteLatency: 150 * time.Millisecond}},
		cfg: Config{SetupConfig: state.SetupConfig{AckWait: 60 * time.Second}, Concurrency: 2, RecoverOnStart: true},
	})
	const scripts = 10
	for s := 0; s < scripts; s++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", s))
	}
	h.setup()
	for s := 0; s < scripts; s++ {
		h.publish(newEvent(fmt.Sprintf("rec-%d", s), "customers", fmt.Sprintf("tenant-%d", s), 1, "patch", map[string]any{
			"upsert": []any{b(`{"type":"plain_text","name":"V","text":"1"}`)}}))
	}
	rn := h.startRunner("before-crash")
	h.eventually("some writes", 20*time.Second, func() (bool, string) {
		st := h.emu.Stats()
		return st.Writes >= 2, fmt.Sprint(st.Writes)
	})
	h.crash(rn)
	before := h.emu.Stats().Writes
	if before >= scripts {
		t.Fatal("every script was written before the crash")
	}
	h.startServer()
	h.startRunner("after-crash")
	// Well under the 60s AckWait: only the recovery scan can do this.
	h.eventually("every script converged before AckWait", 30*time.Second, func() (bool, string) {
		n := 0
		for s := 0; s < scripts; s++ {
			if h.stored("customers", fmt.Sprintf("tenant-%d", s))["V"] != "" {
				n++
			}
		}
		return n == scripts, fmt.Sprint(n)
	})
	if w := h.emu.Stats().Writes; w > scripts+2 {
		t.Errorf("writes = %d for %d scripts (at most one extra per write in flight at the crash)", w, scripts)
	}
}

// TestRedeliveredEventWithoutGenerationChangesNothing: 40 patches without
// a generation set X to v1 … v40. The first one's reconcile fails (503s
// past the client's retries), so it is delivered again after the others
// landed; folding it again must change nothing: the Worker ends at v40,
// not v1.
func TestRedeliveredEventWithoutGenerationChangesNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.seedScript("customers", "tenant-redeliver")
	h.emu.FailNext(4, 503, cfapi.CodeUnknown2, 0, cfapitest.EndpointGetSettings)
	rn := h.startRunner("r1")
	patch := func(i int) {
		h.publish(newEvent(fmt.Sprintf("nogen-%02d", i), "customers", "tenant-redeliver", 0, "patch", map[string]any{
			"upsert": []any{b(fmt.Sprintf(`{"type":"plain_text","name":"X","text":"v%d"}`, i))}}))
	}
	patch(1)
	h.eventually("the first reconcile failed", 20*time.Second, func() (bool, string) {
		n := promtestutil.ToFloat64(rn.m.ReconcileTotal.WithLabelValues(metrics.ResultTransient))
		return n >= 1, fmt.Sprint(n)
	})
	for i := 2; i <= 40; i++ {
		patch(i)
	}
	h.waitDrained(60 * time.Second)
	if got := h.stored("customers", "tenant-redeliver")["X"]; !strings.Contains(got, `"v40"`) {
		t.Fatalf("X = %s after every event settled, want v40", got)
	}
	if n := promtestutil.ToFloat64(rn.m.EventRedeliveries); n < 1 {
		t.Fatalf("no event was delivered again (%v): the test did not exercise a redelivery", n)
	}
}
