package jobs

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// TestCrashWithDefaultLeaseTTL (chaos suite, scenario 1): a process killed
// while its writes are in flight leaves the leases of those scripts in KV,
// and a restarted process (a new owner) must wait for them to expire. With
// the default LeaseTTL that `reconciler run` uses, the restarted process
// converges those scripts from its start-up recovery scan, before AckWait
// redelivers a single event of the dead process: it sees no redelivery
// until every script has converged (counted, not timed).
func TestCrashWithDefaultLeaseTTL(t *testing.T) {
	def := state.SetupConfig{}.WithDefaults()
	h := newHarness(t, harnessOpts{
		// Writes hang until the dying process gives up on them.
		emu: cfapitest.Options{Faults: cfapitest.Faults{WriteLatency: time.Minute}},
		cfg: Config{SetupConfig: state.SetupConfig{AckWait: 4 * def.LeaseTTL, LeaseTTL: def.LeaseTTL},
			Concurrency: 4, RecoverOnStart: true, CoalesceDelay: time.Millisecond, ShutdownTimeout: 500 * time.Millisecond},
	})
	const scripts = 4
	for s := 0; s < scripts; s++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", s))
	}
	h.setup()
	for s := 0; s < scripts; s++ {
		h.publish(newEvent(fmt.Sprintf("lease-%d", s), "customers", fmt.Sprintf("tenant-%d", s), 1, "patch", map[string]any{
			"upsert": []any{b(`{"type":"plain_text","name":"V","text":"1"}`)}}))
	}
	rn := h.startRunner("killed")
	h.eventually("every script's write in flight (its lease held)", 20*time.Second, func() (bool, string) {
		return h.emu.InFlightWrites() == scripts, fmt.Sprint(h.emu.InFlightWrites())
	})
	// The server dies first: no lease is released, no record saved.
	h.crash(rn)
	for s := 0; s < scripts; s++ {
		if h.stored("customers", fmt.Sprintf("tenant-%d", s))["V"] != "" {
			t.Fatal("a write of the killed process was carried out")
		}
	}
	h.emu.SetFaults(cfapitest.Faults{})
	h.startServer()
	restarted := time.Now()
	rn2 := h.startRunner("restarted")
	h.eventually("every script converged after the restart", 2*time.Minute, func() (bool, string) {
		n := 0
		for s := 0; s < scripts; s++ {
			if h.stored("customers", fmt.Sprintf("tenant-%d", s))["V"] != "" {
				n++
			}
		}
		return n == scripts, fmt.Sprint(n)
	})
	if n := testutil.ToFloat64(rn2.m.EventRedeliveries); n != 0 {
		t.Fatalf("the scripts converged only after %v redeliveries: recovery waited for AckWait, not for the lease TTL", n)
	}
	t.Logf("converged %s after the restart (LeaseTTL %s)", time.Since(restarted).Round(100*time.Millisecond), def.LeaseTTL)
}
