package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// backfillRun is one measured backfill of scenario 1 or 2.
type backfillRun struct {
	ns                string
	n, budget         int
	window            time.Duration
	live              int
	sum               *backfillSummary
	lat               []time.Duration
	peakUnacked       int64
	rss               int64
	cpuPerScript      time.Duration
	calls, throttled  int
	necessary         int
	floor             time.Duration
	budgetDescription string
}

// backfillScenario runs scenario 1 (with 3 and 5) or 2: n scripts of which
// 30% need a change, applied by a backfill at budget requests per second
// over window, which the emulator enforces with a strict sliding window.
func (b *bench) backfillScenario(ctx context.Context, ns string, n, budget int, window time.Duration, live int, big bool) ([]row, error) {
	run := &backfillRun{ns: ns, n: n, budget: budget, window: window, live: live}
	if err := b.runBackfill(ctx, run); err != nil {
		return nil, err
	}
	if big {
		return run.bigRows(), nil
	}
	return run.rows(), nil
}

// runBackfill seeds the tenants, starts `reconciler run` with the budget
// and runs `reconciler backfill` (and the live events), measuring them.
func (b *bench) runBackfill(ctx context.Context, run *backfillRun) error {
	w := b.w
	b.logf("seeding %d tenants in %s", run.n, run.ns)
	already := func(i int) []wire.Binding {
		if i%10 < 7 { // 70% have what the patch asks already
			return []wire.Binding{wire.MustParseBinding(assetsBinding)}
		}
		return nil
	}
	if err := w.emu.SeedVaried(cfapitest.DefaultAccount, run.ns, run.n, already); err != nil {
		return err
	}
	perWindow := int(float64(run.budget) * run.window.Seconds())
	run.budgetDescription = fmt.Sprintf("%d/%s", perWindow, run.window)
	w.emu.SetSlidingRateLimit(perWindow, run.window, run.window)
	defer w.stopRuns()
	cfg := childConfig{rate: run.budgetDescription, budgetKey: "bench-" + run.ns, token: "bench-" + run.ns}
	child, err := w.startRun(ctx, cfg)
	if err != nil {
		return err
	}
	w.emu.ResetStats()
	stop := make(chan struct{})
	peak := w.peakUnacked(ctx, stop)
	_, cpuBefore := procStats(child)
	var wg sync.WaitGroup
	if run.live > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run.lat = b.liveEvents(ctx, run.ns, run.n, run.live, 100*time.Millisecond, nil)
		}()
	}
	b.logf("backfill of %s at %s", run.ns, run.budgetDescription)
	run.sum, err = w.backfill(ctx, cfg, run.ns, fmt.Sprintf("bench-%s-%d", run.ns, time.Now().Unix()))
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	var cpuAfter time.Duration
	run.rss, cpuAfter = procStats(child)
	run.cpuPerScript = (cpuAfter - cpuBefore) / time.Duration(run.n)
	run.peakUnacked = peak.Load()
	st := w.emu.Stats()
	lists := (run.n + cfapi.MaxListLimit - 1) / cfapi.MaxListLimit
	run.necessary = lists + run.n + run.sum.Changed
	run.floor = time.Duration(float64(run.necessary) / float64(run.budget) * float64(time.Second))
	run.calls = st.Total - 2*len(run.lat) // a live event costs one read and one write
	run.throttled = st.Throttled
	return nil
}

// rows are scenario 1's (with 3 and 5) table rows.
func (run *backfillRun) rows() []row {
	wall := run.sum.wall()
	ratio := wall.Seconds() / run.floor.Seconds()
	rows := []row{
		newRow("1", fmt.Sprintf("backfill %d scripts (%d changed), budget %s (%d/s): wall", run.n, run.sum.Changed, run.budgetDescription, run.budget),
			wall.Round(10*time.Millisecond).String(), "", true),
		newRow("1", fmt.Sprintf("wall ÷ floor (%d necessary calls ÷ budget = %s)", run.necessary, run.floor.Round(10*time.Millisecond)),
			fmt.Sprintf("%.3f", ratio), "≤ 1.03", ratio <= 1.03),
		// Fewer calls than necessary happen when a live event's script
		// also had a backfill item: one reconcile serves both.
		newRow("1", "API calls ÷ necessary calls", fmt.Sprintf("%.3f", float64(run.calls)/float64(run.necessary)), "≤ 1.000", run.calls <= run.necessary),
		newRow("1", "429 answers", strconv.Itoa(run.throttled), "0", run.throttled == 0),
	}
	if len(run.lat) > 0 {
		p50, p99 := percentiles(run.lat)
		rows = append(rows,
			newRow("3", fmt.Sprintf("live events during the backfill (%d): p50", len(run.lat)), p50.Round(time.Millisecond).String(), "", true),
			newRow("3", "live events during the backfill: p99", p99.Round(time.Millisecond).String(), "≤ 5s", p99 <= 5*time.Second))
	}
	if run.cpuPerScript <= 0 {
		return rows // no /proc
	}
	return append(rows, newRow("5", "`run` CPU per reconciled script (whole process)", run.cpuPerScript.Round(time.Microsecond).String(), "≤ 50µs", run.cpuPerScript <= 50*time.Microsecond))
}

// bigRows are scenario 2's table rows.
func (run *backfillRun) bigRows() []row {
	return []row{
		newRow("2", fmt.Sprintf("backfill %d scripts, budget %s: wall", run.n, run.budgetDescription), run.sum.wall().Round(time.Second).String(), "", true),
		newRow("2", "peak RSS of `reconciler run`", fmt.Sprintf("%.0f MiB", float64(run.rss)/(1<<20)), "≤ 150 MiB", run.rss <= 150<<20),
		newRow("2", "peak unacknowledged messages (both consumers)", strconv.FormatInt(run.peakUnacked, 10), "bounded", run.peakUnacked <= 2000),
		newRow("2", "429 answers", strconv.Itoa(run.throttled), "0", run.throttled == 0),
	}
}

// percentiles returns the p50 and p99 of lat (not empty).
func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	lat = slices.Clone(lat)
	slices.Sort(lat)
	return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
}

// liveEvents publishes count live events to random tenants of ns (n
// tenants), one every every, once start is closed (nil: once the backfill
// has written a fifth of the 30% of tenants that need a change), and
// returns the time from each publish to its binding being live.
func (b *bench) liveEvents(ctx context.Context, ns string, n, count int, every time.Duration, start <-chan struct{}) []time.Duration {
	w := b.w
	if start == nil {
		for w.emu.Stats().Writes < n*3/10/5 {
			if ctx.Err() != nil {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	} else {
		select {
		case <-start:
		case <-ctx.Done():
			return nil
		}
	}
	var mu sync.Mutex
	var out []time.Duration
	var wg sync.WaitGroup
	for i := 0; i < count; i++ {
		t := cfapitest.TenantName(rand.IntN(n) + 1)
		name := fmt.Sprintf("LIVE_%d", i)
		ev := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"bench-live-%s-%d-%d","account_id":%q,"dispatch_namespace":%q,"script":%q,"op":"patch","upsert":[{"type":"plain_text","name":%q,"text":"x"}]}`,
			ns, time.Now().UnixNano(), i, cfapitest.DefaultAccount, ns, t, name)
		sent := time.Now()
		if _, err := tools.Publish(ctx, w.js, "bindings", strings.NewReader(ev), tools.CheckEvent); err != nil {
			b.logf("publishing live event %d: %v", i, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(sent) < 2*time.Minute && ctx.Err() == nil {
				bs, _ := w.emu.Bindings(cfapitest.DefaultAccount, ns, t)
				if _, ok := wire.Bindings(bs).ByName(name); ok {
					mu.Lock()
					out = append(out, time.Since(sent))
					mu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		time.Sleep(every)
	}
	wg.Wait()
	return out
}
