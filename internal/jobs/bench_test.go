package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/natsembed"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// benchEvents returns n encoded patch events over scripts scripts.
func benchEvents(n, scripts int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		s := i % scripts
		ev := map[string]any{"schema": event.SchemaV1, "id": fmt.Sprintf("b-%d", i), "account_id": acct, "dispatch_namespace": "customers",
			"script": fmt.Sprintf("tenant-%04d", s), "generation": i/scripts + 1, "op": "patch",
			"upsert": []any{map[string]any{"type": "plain_text", "name": fmt.Sprintf("N%d", rand.IntN(5)), "text": fmt.Sprint(i)}}}
		out[i], _ = json.Marshal(ev)
	}
	return out
}

// BenchmarkDecodeEvent measures decoding and validating one event.
func BenchmarkDecodeEvent(b *testing.B) {
	evs := benchEvents(1000, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := event.DecodeEvent(evs[i%len(evs)], "", "bindings"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFold measures the fold stage without the API: batches of 1,000
// decoded events over 1,000 scripts folded with one pipelined
// compare-and-set per script against an embedded server. It reports
// events/s.
func BenchmarkFold(b *testing.B) {
	s, err := natsembed.Start(b.TempDir(), "127.0.0.1:-1")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	res, err := state.EnsureStreams(context.Background(), js, state.SetupConfig{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	st := res.NewStore(state.StoreOptions{CacheSize: 10000})
	raw := benchEvents(100000, 1000)
	events := make([]*event.Event, len(raw))
	for i, r := range raw {
		if events[i], err = event.DecodeEvent(r, "", "bindings"); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	folded := 0
	for i := 0; i < b.N; i++ {
		batch := events[(i*1000)%len(events):][:1000]
		groups := map[string]*state.ScriptBatch{}
		var jobs []*state.ScriptBatch
		for _, e := range batch {
			k := e.Key()
			j := groups[k]
			if j == nil {
				j = &state.ScriptBatch{Key: k}
				groups[k] = j
				jobs = append(jobs, j)
			}
			j.Events = append(j.Events, e)
		}
		st.Commit(ctx, jobs, 1<<20)
		for _, j := range jobs {
			if j.Err != nil {
				b.Fatal(j.Err)
			}
		}
		folded += len(batch)
	}
	b.ReportMetric(float64(folded)/time.Since(start).Seconds(), "events/s")
}

// nopAPI answers every read with an empty script and accepts every write.
type nopAPI struct{ API }

func (nopAPI) GetSettings(context.Context, cfapi.ScriptRef) (*cfapi.Settings, error) {
	return &cfapi.Settings{}, nil
}

func (nopAPI) PatchSettings(context.Context, cfapi.ScriptRef, cfapi.SettingsPatch) (*cfapi.Settings, error) {
	return &cfapi.Settings{}, nil
}

// BenchmarkFoldStage measures the whole intake of `run` with its embedded
// server: 100,000 events over 1,000 scripts already in the stream are
// pulled, decoded and folded by a Runner (reconciles wait for the fold
// backlog). It reports events folded per second; run it with
// -benchtime 1x.
func BenchmarkFoldStage(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s, err := natsembed.Start(b.TempDir(), "127.0.0.1:-1")
		if err != nil {
			b.Fatal(err)
		}
		nc, _ := nats.Connect(s.ClientURL())
		js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
		ctx, cancel := context.WithCancel(context.Background())
		cfg := Config{Concurrency: 16, CoalesceMaxWait: time.Minute}
		res, err := state.EnsureStreams(ctx, js, cfg.SetupConfig, nil)
		if err != nil {
			b.Fatal(err)
		}
		const n = 100000
		for k, data := range benchEvents(n, 1000) {
			var ev struct{ Script string }
			_ = json.Unmarshal(data, &ev)
			m := nats.NewMsg("bindings." + acct + ".customers." + ev.Script)
			m.Data = data
			if _, err := js.PublishMsgAsync(m); err != nil {
				b.Fatal(err)
			}
			if k%4000 == 3999 {
				<-js.PublishAsyncComplete()
			}
		}
		<-js.PublishAsyncComplete()
		p, _ := planner.New(planner.Options{FingerprintKey: []byte("bench")})
		m := metrics.New(prometheus.NewRegistry(), event.ReasonLabels()...)
		r := NewRunner(cfg, res, nopAPI{}, p, m, zap.NewNop())
		b.StartTimer()
		start := time.Now()
		done := make(chan struct{})
		go func() { _ = r.Run(ctx); close(done) }()
		for {
			held := r.waiting.counts()[laneLive]
			settled := int(sumOf(m.EventsTotal, allOutcomes...))
			if held+settled >= n {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(n/time.Since(start).Seconds(), "events/s")
		b.StopTimer()
		cancel()
		<-done
		nc.Close()
		s.Shutdown()
	}
}

// BenchmarkReconcileCPU measures the CPU of one reconcile without its
// network round trips: decoding the stored desired state and last-applied
// record and the API's settings answer, planning, building the new record
// and the PATCH body, and encoding the record. The script has ten bindings
// (a secret among them) and one changes.
func BenchmarkReconcileCPU(b *testing.B) {
	ref := cfapi.ScriptRef{AccountID: acct, Namespace: "customers", Script: "tenant-0001"}
	st := event.NewDesiredState(ref)
	var live []string
	for i := 0; i < 9; i++ {
		bnd := fmt.Sprintf(`{"type":"kv_namespace","name":"KV%d","namespace_id":"%032d"}`, i, i)
		st.Fold(&event.Event{ID: fmt.Sprintf("e%d", i), Generation: u64(uint64(i + 1)), Op: event.OpPatch, Upsert: []wire.Binding{wire.MustParseBinding(bnd)}})
		live = append(live, bnd)
	}
	st.Fold(&event.Event{ID: "s", Generation: u64(20), Op: event.OpPatch, Upsert: []wire.Binding{wire.MustParseBinding(`{"type":"secret_text","name":"TOKEN","text":"s3cr3t"}`)}})
	live = append(live, `{"type":"secret_text","name":"TOKEN"}`, `{"type":"plain_text","name":"THEIRS","text":"x"}`)
	p, _ := planner.New(planner.Options{FingerprintKey: []byte("bench-key")})
	first, err := p.Plan(st.Desired(), nil, planner.LastApplied{})
	if err != nil {
		b.Fatal(err)
	}
	rec := &state.AppliedRecord{Version: 1, Bindings: first.Applied.Bindings, DesiredRevision: 7}
	st.Fold(&event.Event{ID: "new", Generation: u64(30), Op: event.OpPatch, Upsert: []wire.Binding{kvBinding("KV0", "changed")}})
	stored, _ := state.EncodeState(st)
	recData, _ := state.EncodeState(rec)
	settingsJSON := []byte(`{"bindings":[` + strings.Join(live, ",") + `],"compatibility_date":"2025-01-01","usage_model":"standard","tags":["a"]}`)
	cached, _ := state.DecodeDesired("k", stored)
	for _, variant := range []string{"decoded", "cached"} {
		b.Run(variant, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				reconcileCPU(b, p, cached, stored, recData, settingsJSON, variant == "cached")
			}
		})
	}
}

// reconcileCPU is one reconcile's CPU for BenchmarkReconcileCPU: with
// cached, the desired state decoded by the fold is reused (the usual case
// when the fold happened in this process).
func reconcileCPU(b *testing.B, p *planner.Planner, cached *event.DesiredState, stored, recData, settingsJSON []byte, useCache bool) {
	{
		ds := cached
		if !useCache {
			var err error
			if ds, err = state.DecodeDesired("k", stored); err != nil {
				b.Fatal(err)
			}
		}
		var r state.AppliedRecord
		if err := json.Unmarshal(recData, &r); err != nil {
			b.Fatal(err)
		}
		var settings cfapi.Settings
		if err := json.Unmarshal(settingsJSON, &settings); err != nil {
			b.Fatal(err)
		}
		desired, hidden := ds.PlannerInput(r.Removed)
		plan, err := p.Plan(desired, settings.Bindings, withoutNames(r.LastApplied(), hidden))
		if err != nil || plan.NoOp() {
			b.Fatalf("plan: %v (no-op %v)", err, plan.NoOp())
		}
		next := &state.AppliedRecord{Version: 1, Bindings: plan.Applied.Bindings, DesiredRevision: 8,
			Removed: ds.Tombstones(), WrittenBy: writtenBy(&r, ds, plan)}
		if _, err := (cfapi.SettingsPatch{Bindings: plan.Request.Bindings}).JSON(); err != nil {
			b.Fatal(err)
		}
		if _, err := state.EncodeState(next); err != nil {
			b.Fatal(err)
		}
	}
}
