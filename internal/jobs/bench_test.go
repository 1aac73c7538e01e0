package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
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
