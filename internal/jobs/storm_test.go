package jobs

import (
	"encoding/json"
	"fmt"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/jobs/event"
)

// stormEvents returns n patch events over the given scripts with shuffled
// generations: each script gets n/len(scripts) events, each upserting one
// of a few names (or removing one), so that names collide often.
func stormEvents(rng *rand.Rand, scripts []string, n int) []map[string]any {
	per := n / len(scripts)
	var out []map[string]any
	for si, s := range scripts {
		gens := rng.Perm(per)
		for i := 0; i < per; i++ {
			gen := uint64(gens[i] + 1)
			name := fmt.Sprintf("N%d", rng.IntN(5))
			fields := map[string]any{"upsert": []any{b(fmt.Sprintf(`{"type":"plain_text","name":%q,"text":"g%d"}`, name, gen))}}
			if rng.IntN(10) == 0 {
				fields = map[string]any{"remove": []any{name}}
			}
			out = append(out, newEvent(fmt.Sprintf("st-%d-%d", si, i), "customers", s, gen, "patch", fields))
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// publishAsync publishes events with pipelined acknowledgements.
func (h *harness) publishAsync(events []map[string]any) {
	h.t.Helper()
	var futures []jetstream.PubAckFuture
	for _, ev := range events {
		data, err := json.Marshal(ev)
		if err != nil {
			h.t.Fatal(err)
		}
		m := nats.NewMsg(subjectOf(ev))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprint(ev["id"]))
		f, err := h.js.PublishMsgAsync(m)
		if err != nil {
			h.t.Fatal(err)
		}
		futures = append(futures, f)
	}
	select {
	case <-h.js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		h.t.Fatal("publishing did not complete")
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			h.t.Fatal(err)
		}
	}
}

// expectedState folds events in order in memory: the per-binding
// last-writer-wins result every delivery order must reach.
func expectedState(t *testing.T, events []map[string]any) map[string]map[string]string {
	t.Helper()
	states := map[string]*event.DesiredState{}
	for _, ev := range events {
		data, _ := json.Marshal(ev)
		e, err := event.DecodeEvent(data, "", "bindings")
		if err != nil {
			t.Fatal(err)
		}
		if states[e.Script] == nil {
			states[e.Script] = event.NewDesiredState(e.Ref())
		}
		states[e.Script].Fold(e)
	}
	out := map[string]map[string]string{}
	for s, st := range states {
		m := map[string]string{}
		for _, bnd := range st.Desired().Bindings {
			m[bnd.Name()] = string(bnd.CanonicalJSON())
		}
		out[s] = m
	}
	return out
}

// TestStormCostsOneReconcilePerScript: 10,000 events for 100 scripts,
// published before the runner starts, cost at most 120 reads and 120
// writes, and every script ends at the per-binding last-writer-wins state.
func TestStormCostsOneReconcilePerScript(t *testing.T) {
	// The coalescing bound is a latency knob, and the harness's short
	// AckWait a test-speed knob; a slow machine (-race, a loaded CI) must
	// not make this test about either: it runs with the product's AckWait.
	h := newHarness(t, harnessOpts{cfg: Config{CoalesceMaxWait: time.Minute, SetupConfig: state.SetupConfig{AckWait: 20 * time.Second}}})
	h.setup()
	var scripts []string
	for s := 0; s < 100; s++ {
		name := fmt.Sprintf("storm-%03d", s)
		scripts = append(scripts, name)
		h.seedScript("customers", name)
	}
	events := stormEvents(rand.New(rand.NewPCG(1, 2)), scripts, 10000)
	h.publishAsync(events)
	start := time.Now()
	rn := h.startRunner("r1")
	h.waitDrained(120 * time.Second)
	took := time.Since(start)
	st := h.emu.Stats()
	t.Logf("10,000 events / 100 scripts: settled in %s; reads=%d writes=%d", took.Round(time.Millisecond), st.Reads, st.Writes)
	if st.Reads > 120 || st.Writes > 120 {
		t.Errorf("reads=%d writes=%d, want at most 120 each", st.Reads, st.Writes)
	}
	want := expectedState(t, events)
	for _, s := range scripts {
		got := h.stored("customers", s)
		for name, v := range want[s] {
			if got[name] != v {
				t.Errorf("%s %s = %s, want %s", s, name, got[name], v)
			}
		}
		for name := range got {
			if _, ok := want[s][name]; !ok {
				t.Errorf("%s has %s, which is not desired", s, name)
			}
		}
	}
	if n := sumOf(rn.m.EventsTotal, allOutcomes...); n != 10000 {
		t.Errorf("events settled = %v, want 10000", n)
	}
}
