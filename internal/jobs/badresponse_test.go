package jobs

import (
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// TestHTMLAnswerIsTransient: a 200 that is not the API's JSON envelope (a
// proxy's or a challenge page) on the settings write is a transient
// failure: a few of them are retried and the event applies; when every
// write gets one, the event is dead-lettered as bad_response once its
// deliveries run out, never as api_rejected, and nothing of it is
// quarantined.
func TestHTMLAnswerIsTransient(t *testing.T) {
	t.Run("a few", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		h.seedScript("customers", "tenant-1")
		h.emu.AnswerPageNext(2, cfapitest.EndpointPatchSettings)
		h.startRunner("r1")
		h.publish(newEvent("page-1", "customers", "tenant-1", 1, "patch", map[string]any{"upsert": []any{
			b(`{"type":"plain_text","name":"A","text":"1"}`)}}))
		h.waitDrained(30 * time.Second)
		if h.stored("customers", "tenant-1")["A"] == "" {
			t.Fatal("not applied after two HTML answers")
		}
		if dl := h.deadLetters(); len(dl) != 0 {
			t.Fatalf("dead letters = %+v", dl)
		}
	})
	t.Run("every write", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: Config{SetupConfig: state.SetupConfig{MaxDeliver: 2}}})
		h.seedScript("customers", "tenant-1")
		h.emu.AnswerPageNext(1000, cfapitest.EndpointPatchSettings)
		h.startRunner("r1")
		h.publish(newEvent("page-2", "customers", "tenant-1", 1, "patch", map[string]any{"upsert": []any{
			b(`{"type":"plain_text","name":"A","text":"1"}`)}}))
		h.waitDrained(60 * time.Second)
		dl := h.deadLetters()
		if len(dl) != 1 || dl[0].Record.Reason != event.ReasonBadResponse {
			t.Fatalf("dead letters = %+v, want one bad_response", dl)
		}
		if dl[0].Record.Attempts != 2 {
			t.Errorf("attempts = %d, want the 2 deliveries", dl[0].Record.Attempts)
		}
		if q := h.desired("customers", "tenant-1").Quarantined("page-2"); q != nil {
			t.Errorf("a bad response quarantined the event: %+v", q)
		}
	})
}
