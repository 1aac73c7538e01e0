package jobs

import (
	"fmt"
	"strings"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/metrics"
)

// otherAcct is an account the test token is not granted.
const otherAcct = "0123456789abcdef0123456789abcdef"

// TestForbiddenAccountCostsOtherTenantsNothing: one event for an account
// outside the token's scope (the API answers 403, code 10000, as it does
// for an account the token was not granted) published among 100 good
// events. The token still verifies, so the bad event is dead-lettered as
// forbidden_account after one confirming probe, the auth gate never
// closes, readiness never fails, and every good event is applied on its
// first delivery.
func TestForbiddenAccountCostsOtherTenantsNothing(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: Config{AuthPause: time.Minute}})
	h.emu.Inject.DenyAccount(otherAcct)
	const good = 100
	for i := 0; i < good; i++ {
		h.seedScript("customers", fmt.Sprintf("tenant-%d", i))
	}
	rn := h.startRunner("r1")
	bad := newEvent("forbidden-1", "", "outside", 1, "patch", map[string]any{
		"upsert": []any{b(`{"type":"plain_text","name":"A","text":"1"}`)}})
	bad["account_id"] = otherAcct
	for i := 0; i < good; i++ {
		if i == good/2 {
			h.publish(bad)
		}
		h.publish(newEvent(fmt.Sprintf("good-%d", i), "customers", fmt.Sprintf("tenant-%d", i), 1, "patch", map[string]any{
			"upsert": []any{b(`{"type":"plain_text","name":"A","text":"1"}`)}}))
	}
	notReady := 0
	h.eventually("every event settled", 60*time.Second, func() (bool, string) {
		if rn.r.Ready() != nil {
			notReady++
		}
		return h.drained()
	})
	for i := 0; i < good; i++ {
		if h.stored("customers", fmt.Sprintf("tenant-%d", i))["A"] == "" {
			t.Errorf("tenant-%d: the good event was not applied", i)
		}
	}
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Record.Reason != event.ReasonForbiddenAccount || !strings.Contains(dl[0].Record.Subject, otherAcct) {
		t.Fatalf("dead letters = %+v, want the one event of %s as forbidden_account", dl, otherAcct)
	}
	if !strings.Contains(dl[0].Record.Error, "10000") && !strings.Contains(dl[0].Record.Error, "403") {
		t.Errorf("the dead letter does not say what the API answered: %s", dl[0].Record.Error)
	}
	if n := rn.r.auth.closings(); n != 0 {
		t.Errorf("the auth gate closed %d times for one account outside the token's scope", n)
	}
	if notReady != 0 {
		t.Errorf("readiness failed %d times", notReady)
	}
	if n := promtestutil.ToFloat64(rn.m.EventRedeliveries); n != 0 {
		t.Errorf("%v redeliveries: a good event waited on the forbidden account", n)
	}
	if n := sumOf(rn.m.EventsTotal, metrics.OutcomeApplied); n != good {
		t.Errorf("applied = %v, want %d", n, good)
	}
	if n := rn.r.scopes.probes; n != 1 {
		t.Errorf("token verifications = %d, want 1", n)
	}
}

// TestRevokedTokenStillPausesEverything: when the token itself fails
// verification, an auth failure still closes the gate (readiness fails)
// and dead-letters nothing.
func TestRevokedTokenStillPausesEverything(t *testing.T) {
	h := newHarness(t, harnessOpts{cfg: Config{AuthPause: 100 * time.Millisecond}})
	h.seedScript("customers", "tenant-0")
	// Every request fails, the verification too, for a while.
	h.emu.FailNext(4, 403, 10000, 0)
	rn := h.startRunner("r1")
	h.publish(newEvent("revoked-1", "customers", "tenant-0", 1, "patch", map[string]any{
		"upsert": []any{b(`{"type":"plain_text","name":"A","text":"1"}`)}}))
	h.waitDrained(60 * time.Second)
	if h.stored("customers", "tenant-0")["A"] == "" {
		t.Error("the event was not applied once the token worked again")
	}
	if dl := h.deadLetters(); len(dl) != 0 {
		t.Errorf("a refused token dead-lettered events: %+v", dl)
	}
	if n := rn.r.auth.closings(); n < 1 {
		t.Error("the auth gate never closed while the token failed verification")
	}
}
