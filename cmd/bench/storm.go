package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/event"
)

// stormScenario is scenario 4: events over scripts, generations shuffled,
// published to a running reconciler with an unlimited budget.
func (b *bench) stormScenario(ctx context.Context, events, scripts int) ([]row, error) {
	w := b.w
	b.logf("storm of %d events over %d scripts", events, scripts)
	if err := w.emu.SeedVaried(cfapitest.DefaultAccount, "storm", scripts); err != nil {
		return nil, err
	}
	w.emu.SetSlidingRateLimit(0, 0, 0)
	cfg := childConfig{budgetKey: "bench-storm", token: "bench-storm"}
	// Publish the storm with no reconciler running (after one has set the
	// streams up), so that folding is measured from a backlog, apart from
	// the publisher's CPU.
	if _, err := w.startRun(ctx, cfg); err != nil {
		return nil, err
	}
	w.stopRuns()
	w.emu.ResetStats()
	n, published, err := b.publishStorm(ctx, events, scripts)
	if err != nil {
		return nil, err
	}
	defer w.stopRuns()
	child, err := w.startRun(ctx, cfg)
	if err != nil {
		return nil, err
	}
	folded, settled, err := b.waitStorm(ctx, child, n)
	if err != nil {
		return nil, err
	}
	st := w.emu.Stats()
	reads := 0
	for _, c := range st.Requests[cfapitest.EndpointGetSettings] {
		reads += c
	}
	rss, _ := procStats(child)
	rate := float64(n) / folded.Seconds()
	rows := []row{
		newRow("4", fmt.Sprintf("storm %d events / %d scripts: published in", n, scripts), published.Round(time.Millisecond).String(), "", true),
		newRow("4", "events folded per second (from a backlog, external NATS)", fmt.Sprintf("%.0f", rate), "≥ 50000", rate >= 50000),
		newRow("4", "events settled (acknowledged) per second", fmt.Sprintf("%.0f", float64(n)/settled.Seconds()), "", true),
		newRow("4", "API reads ÷ scripts", fmt.Sprintf("%.3f", float64(reads)/float64(scripts)), "≤ 1.2", float64(reads)/float64(scripts) <= 1.2),
		newRow("4", "API writes ÷ scripts", fmt.Sprintf("%.3f", float64(st.Writes)/float64(scripts)), "≤ 1.2", float64(st.Writes)/float64(scripts) <= 1.2),
	}
	if rss > 0 {
		rows = append(rows, newRow("4", "peak RSS of `reconciler run`", fmt.Sprintf("%.0f MiB", float64(rss)/(1<<20)), "≤ 150 MiB", rss <= 150<<20))
	}
	return rows, nil
}

// publishStorm publishes events patch events over scripts, generations
// shuffled, and returns how many and how long it took.
func (b *bench) publishStorm(ctx context.Context, events, scripts int) (int, time.Duration, error) {
	js := b.w.js
	per := events / scripts
	type msg struct {
		subject string
		body    []byte
	}
	var msgs []msg
	for s := 1; s <= scripts; s++ {
		gens := rand.Perm(per)
		t := cfapitest.TenantName(s)
		subject := event.Subject("bindings", cfapi.ScriptRef{AccountID: cfapitest.DefaultAccount, Namespace: "storm", Script: t})
		for i := 0; i < per; i++ {
			ev, err := json.Marshal(map[string]any{"schema": event.SchemaV1, "id": fmt.Sprintf("storm-%d-%d", s, i), "account_id": cfapitest.DefaultAccount,
				"dispatch_namespace": "storm", "script": t, "generation": gens[i] + 1, "op": "patch",
				"upsert": []any{map[string]any{"type": "plain_text", "name": fmt.Sprintf("N%d", rand.IntN(5)), "text": strconv.Itoa(gens[i])}}})
			if err != nil {
				return 0, 0, err
			}
			msgs = append(msgs, msg{subject, ev})
		}
	}
	rand.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	start := time.Now()
	for i, mm := range msgs {
		m := nats.NewMsg(mm.subject)
		m.Data = mm.body
		if _, err := js.PublishMsgAsync(m); err != nil {
			return 0, 0, err
		}
		if i%4000 == 3999 {
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return 0, 0, fmt.Errorf("storm: publishing did not complete in 2 minutes")
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	return len(msgs), time.Since(start), nil
}

// waitStorm waits until the child has folded (reconciler_events_folded_total)
// and settled n events, and returns how long each took.
func (b *bench) waitStorm(ctx context.Context, child *runChild, n int) (folded, settled time.Duration, err error) {
	w := b.w
	start := time.Now()
	cons, err := w.js.Consumer(ctx, "BINDINGS", "reconciler")
	if err != nil {
		return 0, 0, err
	}
	for {
		if folded == 0 && w.counter(child, "reconciler_events_folded_total") >= float64(n) {
			folded = time.Since(start)
		}
		if ci, err := cons.Info(ctx); err == nil && folded > 0 && ci.NumPending == 0 && ci.NumAckPending == 0 {
			return folded, time.Since(start), nil
		}
		if time.Since(start) > 10*time.Minute {
			return 0, 0, fmt.Errorf("storm: not settled after 10 minutes")
		}
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
}
