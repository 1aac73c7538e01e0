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

	"github.com/reconciler/reconciler/internal/jobs/natsembed"
)

// benchEvents returns n encoded patch events over scripts scripts.
func benchEvents(n, scripts int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		s := i % scripts
		ev := map[string]any{"schema": SchemaV1, "id": fmt.Sprintf("b-%d", i), "account_id": acct, "dispatch_namespace": "customers",
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
		if _, err := DecodeEvent(evs[i%len(evs)], "", "bindings"); err != nil {
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
	res, err := EnsureStreams(context.Background(), js, SetupConfig{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	st := *res.stores
	st.cache = newStateCache(10000)
	raw := benchEvents(100000, 1000)
	events := make([]*Event, len(raw))
	for i, r := range raw {
		if events[i], err = DecodeEvent(r, "", "bindings"); err != nil {
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
		groups := map[string]*foldJob{}
		var jobs []*foldJob
		for _, e := range batch {
			k := e.Key()
			j := groups[k]
			if j == nil {
				j = &foldJob{key: k}
				groups[k] = j
				jobs = append(jobs, j)
			}
			j.events = append(j.events, e)
		}
		st.foldAll(ctx, jobs, 1<<20)
		for _, j := range jobs {
			if j.err != nil {
				b.Fatal(j.err)
			}
		}
		folded += len(batch)
	}
	b.ReportMetric(float64(folded)/time.Since(start).Seconds(), "events/s")
}
