package jobs

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
)

// TestTypeNameRefusedFallsBackToVersion: an API that refuses a settings
// PATCH's {type, name} entries (SpecGuesses.RefuseTypeName) must not make
// writes fail or wipe values. The first refused PATCH is written as a
// version instead (the secret and the KV binding keep their values), the
// process remembers it, so later changes go straight to a version, and
// every fallback is counted.
func TestTypeNameRefusedFallsBackToVersion(t *testing.T) {
	h := newHarness(t, harnessOpts{emu: cfapitest.Options{Guesses: cfapitest.SpecGuesses{RefuseTypeName: true}}})
	const secret = `{"type":"secret_text","name":"API_KEY","text":"keep-this-secret"}`
	const kv = `{"type":"kv_namespace","name":"KV","namespace_id":"0f2ac74b498b48028cb68387c421e279"}`
	for i := 1; i <= 2; i++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", i), secret, kv)
	}
	rn := h.startRunner("r1")
	for i := 1; i <= 2; i++ {
		h.publish(newEvent(fmt.Sprintf("tn-%d", i), "customers", fmt.Sprintf("tenant-%d", i), 1, "patch", map[string]any{"upsert": []any{
			b(`{"type":"plain_text","name":"PLAN","text":"pro"}`)}}))
		h.waitDrained(20 * time.Second)
	}
	for i := 1; i <= 2; i++ {
		got := h.stored("customers", fmt.Sprintf("tenant-%d", i))
		if !strings.Contains(got["PLAN"], `"pro"`) || !strings.Contains(got["API_KEY"], "keep-this-secret") ||
			!strings.Contains(got["KV"], "0f2ac74b498b48028cb68387c421e279") {
			t.Errorf("tenant-%d: %v", i, got)
		}
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Errorf("%d dead letters: %v", len(dl), reasons(dl))
	}
	refused := h.emu.Stats().Requests[cfapitest.EndpointPatchSettings][400]
	if refused != 1 {
		t.Errorf("%d refused PATCHes, want 1: the fallback is remembered", refused)
	}
	if n := sumOf(rn.m.StrategyFallbacks.MustCurryWith(map[string]string{"from": "settings"}), "version"); n != 2 {
		t.Errorf("reconciler_strategy_fallbacks_total{from=settings,to=version} = %v, want 2", n)
	}
}
