package jobs

import (
	"fmt"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// TestCrashSettlesWithDefaultAckWait: with the default AckWait, the
// events a killed process held are delivered again and settled by the
// process that replaces it within the test's 60 s, without the recovery
// scan (RecoverOnStart off): the default is short, so a crash costs
// seconds, not minutes.
func TestCrashSettlesWithDefaultAckWait(t *testing.T) {
	def := state.SetupConfig{}.WithDefaults().AckWait
	if def > 30*time.Second {
		t.Fatalf("default AckWait is %s: a crash's events would wait that long", def)
	}
	h := newHarness(t, harnessOpts{
		emu: cfapitest.Options{Faults: cfapitest.Faults{WriteLatency: 300 * time.Millisecond}},
		cfg: Config{SetupConfig: state.SetupConfig{AckWait: def}, Concurrency: 1},
	})
	const scripts = 6
	for s := 0; s < scripts; s++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", s))
	}
	h.setup()
	for s := 0; s < scripts; s++ {
		h.publish(newEvent(fmt.Sprintf("ack-%d", s), "customers", fmt.Sprintf("tenant-%d", s), 1, "patch", map[string]any{
			"upsert": []any{b(`{"type":"plain_text","name":"V","text":"1"}`)}}))
	}
	rn := h.startRunner("before-crash")
	h.eventually("a first write", 20*time.Second, func() (bool, string) {
		st := h.emu.Stats()
		return st.Writes >= 1, fmt.Sprint(st.Writes)
	})
	h.crash(rn)
	h.startServer()
	h.startRunner("after-crash")
	h.waitDrained(60 * time.Second)
	for s := 0; s < scripts; s++ {
		if h.stored("customers", fmt.Sprintf("tenant-%d", s))["V"] == "" {
			t.Errorf("tenant-%d not converged", s)
		}
	}
}

// TestHeldEventsOutliveAShortAckWait: an event whose reconcile takes
// several AckWaits (a slow write) is kept alive with InProgress while it
// is worked: it is never delivered again.
func TestHeldEventsOutliveAShortAckWait(t *testing.T) {
	h := newHarness(t, harnessOpts{
		emu: cfapitest.Options{Faults: cfapitest.Faults{WriteLatency: 4 * time.Second}},
		cfg: Config{SetupConfig: state.SetupConfig{AckWait: time.Second}, ReconcileTimeout: 20 * time.Second},
	})
	h.seedScript("customers", "slow")
	rn := h.startRunner("r1")
	h.publish(newEvent("slow-1", "customers", "slow", 1, "patch", map[string]any{
		"upsert": []any{b(`{"type":"plain_text","name":"V","text":"1"}`)}}))
	h.waitDrained(30 * time.Second)
	if h.stored("customers", "slow")["V"] == "" {
		t.Fatal("not applied")
	}
	if n := promtestutil.ToFloat64(rn.m.EventRedeliveries); n != 0 {
		t.Errorf("the event was delivered again %v times while it was worked", n)
	}
}
