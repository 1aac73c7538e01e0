package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/reconcile"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/metrics"
)

// fakeAcker records what was done to a message, like sample-controller's
// recorded actions.
type fakeAcker struct {
	mu      sync.Mutex
	actions []string
}

func (a *fakeAcker) record(s string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.actions = append(a.actions, s)
	return nil
}
func (a *fakeAcker) Ack() error                         { return a.record("ack") }
func (a *fakeAcker) InProgress() error                  { return a.record("in_progress") }
func (a *fakeAcker) NakWithDelay(d time.Duration) error { return a.record("nak") }
func (a *fakeAcker) TermWithReason(r string) error      { return a.record("term:" + r) }

// fakePublisher records published subjects; it fails subjects with a
// prefix in fail (the first failTimes of them, when it is positive).
type fakePublisher struct {
	mu        sync.Mutex
	subjects  []string
	data      []string
	fail      string
	failTimes int
	failed    int
}

func (p *fakePublisher) PublishMsg(_ context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != "" && strings.HasPrefix(m.Subject, p.fail) && (p.failTimes <= 0 || p.failed < p.failTimes) {
		p.failed++
		return nil, errors.New("stream unavailable")
	}
	p.subjects = append(p.subjects, m.Subject)
	p.data = append(p.data, string(m.Data))
	return &jetstream.PubAck{Stream: "S", Sequence: uint64(len(p.subjects))}, nil
}

// unitRunner is a Runner with no NATS and no API, for the outcome switch.
func unitRunner(t *testing.T, pub publisher) *Runner {
	cfg := Config{SetupConfig: state.SetupConfig{MaxDeliver: 3}, NakDelay: 10 * time.Millisecond}.withDefaults()
	r := &Runner{cfg: cfg, m: metrics.New(prometheus.NewRegistry(), event.ReasonLabels()...), log: zap.NewNop(),
		waiting: newWaitTable(), clock: cfg.Clock, maxState: 1 << 20}
	r.dlq = deadLetters{cfg: cfg, pub: pub, maxState: r.maxState, log: r.log}
	r.results = backfillResults{cfg: cfg, pub: pub, m: r.m, clock: cfg.Clock, log: r.log}
	return r
}

func TestSettle(t *testing.T) {
	const subject = "bindings.023e105f4ecef8ad9ca31a8372d0c353.customers.tenant-1"
	const bfSubject = "bindings_backfill.run1.023e105f4ecef8ad9ca31a8372d0c353.customers.tenant-1"
	body := `{"schema":"bindings.change/v1","id":"e1","account_id":"023e105f4ecef8ad9ca31a8372d0c353","dispatch_namespace":"customers","script":"tenant-1","op":"patch","upsert":[{"type":"secret_text","name":"S","text":"hunter2"}]}`
	item := &backfillItem{run: "run1", key: "023e105f4ecef8ad9ca31a8372d0c353.customers.tenant-1"}
	boom := errors.New("boom")
	cases := []struct {
		name        string
		delivered   uint64
		backfill    bool
		failPublish string
		failTimes   int
		o           outcome
		wantActions []string
		wantPublish []string // subject prefixes, in order
		wantEvents  map[string]float64
		wantDLQ     event.Reason
	}{
		{name: "applied is acked", delivered: 1, o: ackOutcome(outcomeApplied, true),
			wantActions: []string{"ack"}, wantEvents: map[string]float64{"applied": 1}},
		{name: "stale is acked", delivered: 1, o: ackOutcome(outcomeStale, false),
			wantActions: []string{"ack"}, wantEvents: map[string]float64{"stale": 1}},
		{name: "transient failure is redelivered later", delivered: 1, o: retryOutcome(boom),
			wantActions: []string{"nak"}},
		{name: "transient failure on the last delivery is dead-lettered", delivered: 3, o: retryOutcome(boom),
			wantActions: []string{"term:max_deliveries"}, wantPublish: []string{"bindings_dlq."},
			wantEvents: map[string]float64{"dead_lettered": 1}, wantDLQ: event.ReasonMaxDeliveries},
		{name: "permanent failure is dead-lettered", delivered: 1, o: deadLetterOutcome(event.ReasonAPIRejected, boom),
			wantActions: []string{"term:api_rejected"}, wantPublish: []string{"bindings_dlq."},
			wantEvents: map[string]float64{"dead_lettered": 1}, wantDLQ: event.ReasonAPIRejected},
		{name: "dead letter that cannot be stored is redelivered", delivered: 1, failPublish: "bindings_dlq.",
			o: deadLetterOutcome(event.ReasonAPIRejected, boom), wantActions: []string{"nak"}},
		{name: "shutdown hands back", delivered: 1, o: outcome{kind: outRelease}, wantActions: []string{"nak"}},
		{name: "backfill result before the ack", delivered: 1, backfill: true, o: ackOutcome(outcomeApplied, true),
			wantActions: []string{"ack"}, wantPublish: []string{"bindings_backfill_results.run1."},
			wantEvents: map[string]float64{"applied": 1}},
		{name: "backfill result that cannot be stored is redelivered", delivered: 1, backfill: true,
			failPublish: "bindings_backfill_results.", o: ackOutcome(outcomeNoop, false), wantActions: []string{"nak"}},
		{name: "backfill result stored after failed attempts", delivered: 1, backfill: true,
			failPublish: "bindings_backfill_results.", failTimes: 2, o: ackOutcome(outcomeApplied, true),
			wantActions: []string{"ack"}, wantPublish: []string{"bindings_backfill_results.run1."},
			wantEvents: map[string]float64{"applied": 1}},
		{name: "backfill result on the last delivery is tried until it is stored", delivered: 3, backfill: true,
			failPublish: "bindings_backfill_results.", failTimes: resultAttempts + 1, o: ackOutcome(outcomeApplied, true),
			wantActions: []string{"in_progress", "in_progress", "ack"}, wantPublish: []string{"bindings_backfill_results.run1."},
			wantEvents: map[string]float64{"applied": 1}},
		{name: "backfill failure on the last delivery: its result is tried until it is stored", delivered: 3, backfill: true,
			failPublish: "bindings_backfill_results.", failTimes: resultAttempts + 1, o: retryOutcome(boom),
			wantActions: []string{"in_progress", "in_progress", "term:max_deliveries"}, wantPublish: []string{"bindings_dlq.", "bindings_backfill_results.run1."},
			wantDLQ: event.ReasonMaxDeliveries},
		{name: "backfill failure whose result cannot be stored is redelivered, not terminated", delivered: 1, backfill: true,
			failPublish: "bindings_backfill_results.", o: deadLetterOutcome(event.ReasonNotFound, boom),
			wantActions: []string{"nak"}, wantPublish: []string{"bindings_dlq."}},
		{name: "backfill failure result stored after failed attempts", delivered: 1, backfill: true,
			failPublish: "bindings_backfill_results.", failTimes: 2, o: deadLetterOutcome(event.ReasonNotFound, boom),
			wantActions: []string{"term:not_found"}, wantPublish: []string{"bindings_dlq.", "bindings_backfill_results.run1."},
			wantEvents: map[string]float64{"dead_lettered": 1}, wantDLQ: event.ReasonNotFound},
		{name: "backfill failure records the dead letter and the result", delivered: 1, backfill: true,
			o: deadLetterOutcome(event.ReasonNotFound, boom), wantActions: []string{"term:not_found"},
			wantPublish: []string{"bindings_dlq.", "bindings_backfill_results.run1."},
			wantEvents:  map[string]float64{"dead_lettered": 1}, wantDLQ: event.ReasonNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pub := &fakePublisher{fail: c.failPublish, failTimes: c.failTimes}
			r := unitRunner(t, pub)
			a := &fakeAcker{}
			h := &waitingEvent{ack: a, id: "e1", delivered: c.delivered, stream: "BINDINGS", streamSeq: 9,
				body: []byte(body), subject: subject}
			if c.backfill {
				h.lane, h.backfill, h.subject, h.stream = laneBackfill, item, bfSubject, "BINDINGS_BACKFILL"
			}
			r.settle(context.Background(), h, c.o)
			if diff := cmp.Diff(c.wantActions, a.actions); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
			if len(pub.subjects) != len(c.wantPublish) {
				t.Fatalf("published %v, want prefixes %v", pub.subjects, c.wantPublish)
			}
			for i, p := range c.wantPublish {
				if !strings.HasPrefix(pub.subjects[i], p) {
					t.Errorf("publish %d = %s, want prefix %s", i, pub.subjects[i], p)
				}
			}
			for _, d := range pub.data {
				if strings.Contains(d, "hunter2") {
					t.Errorf("a secret reached a record: %s", d)
				}
			}
			for o, want := range c.wantEvents {
				if got := promtestutil.ToFloat64(r.m.EventsTotal.WithLabelValues(o)); got != want {
					t.Errorf("events{%s} = %v, want %v", o, got, want)
				}
			}
			if c.wantDLQ != "" {
				if got := promtestutil.ToFloat64(r.m.DeadLetters.WithLabelValues(string(c.wantDLQ))); got != 1 {
					t.Errorf("dead letters{%s} = %v, want 1", c.wantDLQ, got)
				}
				if !strings.Contains(pub.data[0], fmt.Sprintf(`"reason":%q`, c.wantDLQ)) {
					t.Errorf("record = %s", pub.data[0])
				}
			}
		})
	}
}

// TestOutcomeForQuarantinedEvent: after a successful reconcile, an event
// whose operations were all quarantined is dead-lettered with the
// quarantine's reason; the others are applied.
func TestOutcomeForQuarantinedEvent(t *testing.T) {
	st := event.NewDesiredState(cfapi.ScriptRef{AccountID: acct, Namespace: "customers", Script: "tenant-1"})
	st.Fold(&event.Event{ID: "bad", Generation: u64(1), Op: event.OpPatch, Upsert: nil, Remove: []string{"X"}})
	st.Fold(&event.Event{ID: "good", Generation: u64(2), Op: event.OpPatch, Remove: []string{"Y"}})
	st.Quarantine(map[string]bool{"bad": true}, event.Quarantine{Reason: event.ReasonInvalidDesired, Error: "no"})
	res := reconcile.Result{Wrote: true, State: st}
	if o := outcomeFor(res, &waitingEvent{id: "bad"}); o.kind != outDeadLetter || o.reason != event.ReasonInvalidDesired {
		t.Errorf("bad: %+v", o)
	}
	if o := outcomeFor(res, &waitingEvent{id: "good"}); o.kind != outAck || o.label != outcomeApplied {
		t.Errorf("good: %+v", o)
	}
	if o := outcomeFor(res, &waitingEvent{id: "gone"}); o.kind != outAck {
		t.Errorf("an event whose operations were replaced: %+v", o)
	}
}
