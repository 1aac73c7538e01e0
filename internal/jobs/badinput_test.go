package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/scripts/chaos/badinput"
)

// Bindings every catalogue script starts with: a secret and a binding
// nobody told the reconciler about. Neither may be lost.
const (
	seededSecret  = `{"type":"secret_text","name":"API_TOKEN","text":"seeded-secret-value"}`
	seededTheirs  = `{"type":"plain_text","name":"THEIRS","text":"made by hand"}`
	catalogueWait = 60 * time.Second
)

// TestBadInputFullCatalogue runs the chaos suite's catalogue of malformed
// and borderline events (scripts/chaos/badinput) through one runner on an
// embedded server: every bad event is dead-lettered with the reason the
// README lists and an error naming the field, every valid one is applied,
// no dead letter holds a secret, nothing of a rejected event is written,
// the seeded secrets and unowned bindings survive, and a good event
// published after all of them still applies.
func TestBadInputFullCatalogue(t *testing.T) {
	// A redelivery comes 3s after a failed reconcile, time enough for the
	// redelivery case's later events to be folded before it.
	h := newHarness(t, harnessOpts{cfg: Config{NakDelay: 3 * time.Second, MaxNakDelay: 3 * time.Second}})
	cases := badinput.Cases(acct)
	if len(cases) < 25 {
		t.Fatalf("catalogue has %d cases, want at least 25", len(cases))
	}
	if err := h.emu.CreateNamespace(acct, badinput.Namespace); err != nil {
		t.Fatal(err)
	}
	h.emu.Inject.DenyAccount(badinput.ForbiddenAccount)
	redeliveries := 0
	for _, c := range cases {
		h.seedScript(c.Namespace, c.Script, append([]string{seededSecret, seededTheirs}, c.Live...)...)
		c.Arrange(h.emu, acct, harnessAttempts)
		if c.API.FailFirstReconcile {
			redeliveries++
		}
	}
	h.seedScript(badinput.Namespace, "after-bad-input", seededSecret, seededTheirs)
	rn := h.startRunner("r1")
	for _, c := range cases {
		h.publishRaw(c.Subject, c.Body, c.MsgID)
	}
	goodSubject, goodBody := badinput.Good(acct, "after-bad-input", "good-after-catalogue")
	h.publishRaw(goodSubject, goodBody, "good-after-catalogue")
	h.catalogueSteps(cases)

	if got := h.stored(badinput.Namespace, "after-bad-input"); got["AFTER_BAD_INPUT"] == "" {
		t.Errorf("the good event published after the catalogue was not applied: %v", keys(got))
	}
	bySubject := map[string][]state.DeadLetter{}
	for _, e := range h.deadLetters() {
		bySubject[e.Record.Subject] = append(bySubject[e.Record.Subject], e.Record)
		raw, _ := json.Marshal(e.Record)
		if strings.Contains(string(raw), badinput.Secret) || strings.Contains(string(raw), "seeded-secret-value") {
			t.Errorf("dead letter of %s holds a secret: %s", e.Record.Subject, cfapi.Truncate(string(raw), 600))
		}
	}
	written := map[string]bool{}
	for _, r := range h.emu.RequestLog() {
		if r.Method != "GET" {
			written[r.Script] = true
		}
	}
	deadLettered, accepted := 0, 0
	for _, c := range cases {
		recs := bySubject[c.Subject]
		switch {
		case c.Reason != "":
			deadLettered++
			if len(recs) != 1 {
				t.Errorf("%s: %d dead letters on %s, want 1", c.Name, len(recs), c.Subject)
				continue
			}
			r := recs[0]
			if string(r.Reason) != c.Reason {
				t.Errorf("%s: reason %q, want %q (error: %s)", c.Name, r.Reason, c.Reason, r.Error)
			}
			for _, m := range c.ErrorMentions {
				if !strings.Contains(r.Error, m) {
					t.Errorf("%s: error %q does not name %q", c.Name, r.Error, m)
				}
			}
			if r.Attempts != 1 || r.FailedAt.IsZero() || r.StreamSeq == 0 {
				t.Errorf("%s: incomplete record: attempts=%d failed_at=%v stream_seq=%d", c.Name, r.Attempts, r.FailedAt, r.StreamSeq)
			}
			if written[c.Script] && !c.Staged() {
				t.Errorf("%s: the rejected event's script was written", c.Name)
			}
			if c.Check != nil {
				live := map[string]json.RawMessage{}
				bs, _ := h.emu.Bindings(acct, c.Namespace, c.Script)
				for _, b := range bs {
					live[b.Name()] = b.Raw()
				}
				if err := c.Check(live); err != nil {
					t.Errorf("%s: %v", c.Name, err)
				}
			}
		case c.Accepted:
			accepted++
			if len(recs) != 0 {
				t.Errorf("%s: a valid event was dead-lettered: %s: %s", c.Name, recs[0].Reason, recs[0].Error)
				continue
			}
			live := map[string]json.RawMessage{}
			bs, _ := h.emu.Bindings(acct, c.Namespace, c.Script)
			for _, b := range bs {
				live[b.Name()] = b.Raw()
			}
			if err := c.Check(live); err != nil {
				t.Errorf("%s: %v", c.Name, err)
			}
		}
		if err := c.Exercised(h.emu, harnessAttempts); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		got := h.stored(c.Namespace, c.Script)
		if got["API_TOKEN"] != canon(seededSecret) || got["THEIRS"] != canon(seededTheirs) {
			t.Errorf("%s: a seeded secret or unowned binding was lost or changed: API_TOKEN=%t THEIRS=%t",
				c.Name, got["API_TOKEN"] != "", got["THEIRS"] != "")
		}
	}
	if n := len(h.deadLetters()); n != deadLettered {
		t.Errorf("dead letters = %d, want %d (one per bad event)", n, deadLettered)
	}
	if n := promtestutil.ToFloat64(rn.m.PanicsRecovered); n != 0 {
		t.Errorf("panics recovered = %v", n)
	}
	if n := promtestutil.ToFloat64(rn.m.EventRedeliveries); redeliveries > 0 && n < float64(redeliveries) {
		t.Errorf("redeliveries = %v, want at least %d: the redelivery cases did not exercise one", n, redeliveries)
	}
	select {
	case err := <-rn.done:
		t.Fatalf("the runner stopped: %v", err)
	default:
	}
	t.Logf("catalogue: %d cases, %d dead-lettered with their reason, %d accepted; %d API writes",
		len(cases), deadLettered, accepted, h.emu.Stats().Writes)
}

// harnessAttempts is the harness client's MaxAttempts.
const harnessAttempts = 4

// catalogueSteps takes the steps of the catalogue's cases (badinput.Step)
// after their first events were published: early steps as soon as their
// case's first reconcile failed, then every case's next step once every
// event has settled, and at the end waits until every event has settled.
func (h *harness) catalogueSteps(cases []badinput.Case) {
	h.t.Helper()
	for _, c := range cases {
		if len(c.Then) > 0 && c.Then[0].Early {
			h.eventually(c.Name+": first reconcile failed", catalogueWait, func() (bool, string) {
				return c.FirstReconcileFailed(h.emu, harnessAttempts), ""
			})
			h.catalogueStep(c, 0)
		}
	}
	h.waitDrained(catalogueWait)
	for k := 0; ; k++ {
		took := false
		for _, c := range cases {
			if k < len(c.Then) && !(k == 0 && c.Then[0].Early) {
				h.catalogueStep(c, k)
				took = true
			}
		}
		if !took {
			return
		}
		h.waitDrained(catalogueWait)
	}
}

// catalogueStep takes step k of case c.
func (h *harness) catalogueStep(c badinput.Case, k int) {
	h.t.Helper()
	st := c.Then[k]
	if len(st.Tenant) > 0 {
		if err := badinput.SetByHand(h.emu, acct, c.Namespace, c.Script, st.Tenant); err != nil {
			h.t.Fatalf("%s: %v", c.Name, err)
		}
	}
	if st.Replay {
		replayed := 0
		for _, e := range h.deadLetters() {
			if e.Record.Subject != c.Subject {
				continue
			}
			if res := tools.ReplayDeadLetter(context.Background(), h.js, state.Names{}, e, true); res.Error != "" {
				h.t.Errorf("%s: replay of dead letter %d: %s", c.Name, e.Seq, res.Error)
			}
			replayed++
		}
		if replayed == 0 {
			h.t.Errorf("%s: step %d: no dead letter to replay", c.Name, k+1)
		}
	}
	for i, body := range st.Events {
		h.publishRaw(c.Subject, body, c.StepMsgID(k, i))
	}
}

// TestBadInputCatalogueDecodes checks the catalogue against event.DecodeEvent
// alone (no server): the fast version of the test above, which names the
// case that breaks.
func TestBadInputCatalogueDecodes(t *testing.T) {
	for _, c := range badinput.Cases(acct) {
		t.Run(c.Name, func(t *testing.T) {
			_, err := event.DecodeEvent(c.Body, c.Subject, "bindings")
			switch {
			case (c.Accepted || c.AtReconcile) && err != nil:
				t.Fatalf("valid event rejected: %v", err)
			case c.AtReconcile:
			case c.Reason != "" && err == nil:
				t.Fatalf("accepted, want %s", c.Reason)
			case c.Reason != "":
				var ie *event.InvalidEventError
				if !errors.As(err, &ie) || string(ie.Reason) != c.Reason {
					t.Fatalf("error %v, want reason %s", err, c.Reason)
				}
				if strings.Contains(err.Error(), badinput.Secret) {
					t.Fatalf("error shows the secret: %v", err)
				}
				rec := state.NewDeadLetter(c.Body, c.Subject, "BINDINGS", 1, 1, ie.Reason, err)
				raw, _ := json.Marshal(rec)
				if strings.Contains(string(raw), badinput.Secret) {
					t.Fatalf("dead letter holds the secret: %s", cfapi.Truncate(string(raw), 400))
				}
			}
		})
	}
}
