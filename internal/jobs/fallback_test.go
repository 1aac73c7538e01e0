package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
)

// TestResyncWithoutScriptList: when the API does not serve the namespace
// script list (404 or 405), a resync reads every script it
// knows, and the process stops asking for the list after the first
// refusal: no error loop, one list request in all.
func TestResyncWithoutScriptList(t *testing.T) {
	cases := map[string]cfapitest.SpecGuesses{
		"404": {ScriptList: cfapitest.ScriptListNotFound},
		"405": {ScriptList: cfapitest.ScriptListNotAllowed},
	}
	for name, g := range cases {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{emu: cfapitest.Options{Guesses: g}})
			const n = 4
			for i := 0; i < n; i++ {
				h.seedScript("customers", fmt.Sprintf("tenant-%d", i))
			}
			rn := h.startRunner("r1")
			for i := 0; i < n; i++ {
				h.publish(newEvent(fmt.Sprintf("nl-%d", i), "customers", fmt.Sprintf("tenant-%d", i), 1, "replace", map[string]any{"bindings": []any{
					b(`{"type":"kv_namespace","name":"KV","namespace_id":"right"}`)}}))
			}
			h.waitDrained(20 * time.Second)
			count := func(endpoint string) int {
				total := 0
				for _, c := range h.emu.Stats().Requests[endpoint] {
					total += c
				}
				return total
			}
			lists := count(cfapitest.EndpointListScripts)
			for round := 1; round <= 3; round++ {
				before := count(cfapitest.EndpointGetSettings)
				q, err := rn.r.Resync(context.Background())
				if err != nil || q != n {
					t.Fatalf("round %d: resync queued %d, %v; want every script", round, q, err)
				}
				h.eventually("resync reads done", 20*time.Second, func() (bool, string) {
					got := count(cfapitest.EndpointGetSettings) - before
					return got == n && rn.r.queue.Pending()[laneBackfill] == 0, fmt.Sprint(got)
				})
			}
			if got := count(cfapitest.EndpointListScripts) - lists; got != 1 {
				t.Errorf("%d list requests in three resyncs, want 1", got)
			}
			if !rn.r.resync.listUnsupported.Load() {
				t.Error("the runner did not remember that the list is not served")
			}
		})
	}
}
