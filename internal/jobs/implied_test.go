package jobs

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// TestRefusedImpliedRemovalBlamesTheReplace: a replace drops a binding
// the reconciler applied earlier (an implied removal: no operation names
// it) and the API refuses that removal. The replace is blamed and
// quarantined like any operation (dead-lettered with the API's reason),
// the binding is left alone, and a later patch on the script lands instead
// of being blamed for ever.
func TestRefusedImpliedRemovalBlamesTheReplace(t *testing.T) {
	refuse := func(p cfapi.SettingsPatch) bool {
		_, kept := p.Bindings.ByName("STUCK")
		return !kept
	}
	var armed atomic.Bool
	h := newHarness(t, harnessOpts{wrapAPI: func(api API) API {
		return apiFunc{API: api, patchSettings: func(ctx context.Context, ref cfapi.ScriptRef, p cfapi.SettingsPatch) (*cfapi.Settings, error) {
			if armed.Load() && refuse(p) {
				return nil, &cfapi.APIError{StatusCode: 400, Method: "PATCH", Path: "/settings",
					Errors: []cfapi.ErrorDetail{{Code: cfapi.CodeValidation, Message: "binding STUCK is in use by a Durable Object migration and cannot be removed"}}}
			}
			return api.PatchSettings(ctx, ref, p)
		}}
	}})
	h.seedScript("customers", "tenant-1")
	h.startRunner("r1")
	h.publish(newEvent("first", "customers", "tenant-1", 1, "replace", map[string]any{"bindings": []any{
		b(`{"type":"plain_text","name":"STUCK","text":"1"}`), b(`{"type":"plain_text","name":"KEEP","text":"1"}`)}}))
	h.waitDrained(30 * time.Second)
	if got := h.stored("customers", "tenant-1"); got["STUCK"] == "" || got["KEEP"] == "" {
		t.Fatalf("first replace not applied: %v", keys(got))
	}
	armed.Store(true)
	h.publish(newEvent("drops-stuck", "customers", "tenant-1", 2, "replace", map[string]any{"bindings": []any{
		b(`{"type":"plain_text","name":"KEEP","text":"2"}`)}}))
	h.waitDrained(30 * time.Second)
	h.publish(newEvent("later", "customers", "tenant-1", 3, "patch", map[string]any{"upsert": []any{
		b(`{"type":"plain_text","name":"LATER","text":"yes"}`)}}))
	h.waitDrained(30 * time.Second)

	got := h.stored("customers", "tenant-1")
	if got["LATER"] == "" {
		t.Errorf("the later patch did not land: %v", keys(got))
	}
	if got["STUCK"] == "" {
		t.Errorf("the binding whose removal the API refused is gone: %v", keys(got))
	}
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Record.EventID != "drops-stuck" || dl[0].Record.Reason != event.ReasonAPIRejected ||
		!strings.Contains(dl[0].Record.Error, "STUCK") {
		t.Fatalf("dead letters = %v, want only the replace that implied the removal, as api_rejected naming STUCK", dlSummary(dl))
	}
}

// dlSummary shows dead letters as id/reason/error lines.
func dlSummary(dl []tools.DLQEntry) string {
	var b strings.Builder
	for _, e := range dl {
		b.WriteString(e.Record.EventID + " " + string(e.Record.Reason) + ": " + cfapi.Truncate(e.Record.Error, 200) + "\n")
	}
	return b.String()
}
