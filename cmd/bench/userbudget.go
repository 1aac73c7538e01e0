package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
)

// The scenarios of the user's budget: the API counts one quota per user,
// which other tools spend too. The emulator enforces it with a strict
// sliding window (a request over the quota blocks the token for a window,
// every request answered 429 until then), sends the Ratelimit headers,
// and plays another tool spending the same quota (SetOtherToolRate). The
// reconciler must leave the other tool its share, reading the headers:
// every process is configured with the whole quota as --rate-limit.

// reserveShare is the --rate-reserve the children run with: the share of
// the policy's quota left for people and other tools.
const reserveShare = 0.10

// userBudget is one measured run of scenarios 6–8.
type userBudget struct {
	ns          string
	n           int
	quota       int
	window      time.Duration
	otherShare  float64 // of quota per window, steady
	calls       int     // requests of the reconciler (emulator's Stats)
	throttled   int     // 429s to the reconciler
	blocks      int     // blocks of the token a reconciler request started
	other       cfapitest.OtherToolStats
	sum         *backfillSummary
	converged   int
	timeline    *timeline
	burstStart  time.Time
	burstEnd    time.Time
	backfillEnd time.Time
	lat         []time.Duration
}

// allowedRate is the requests per second the reconciler may keep up:
// the quota less the reserve and the other tool's steady share.
func (u *userBudget) allowedRate() float64 {
	return float64(u.quota) * (1 - reserveShare - u.otherShare) / u.window.Seconds()
}

// runUserBudget seeds n tenants of u.ns without the patch's binding,
// sets the emulator's window, starts procs `run` children with rate (the
// whole quota, or auto) and the other tool at its share, runs the
// backfill, and measures. during, when set, runs beside the backfill.
func (b *bench) runUserBudget(ctx context.Context, u *userBudget, procs int, rate string, during func(ctx context.Context, u *userBudget)) error {
	w := b.w
	b.logf("seeding %d tenants in %s", u.n, u.ns)
	if err := w.emu.SeedVaried(cfapitest.DefaultAccount, u.ns, u.n); err != nil {
		return err
	}
	w.emu.SetOtherToolRate(0)
	w.emu.SetSlidingRateLimit(u.quota, u.window, u.window)
	defer w.stopRuns()
	cfg := childConfig{rate: rate, budgetKey: "bench-" + u.ns, token: "bench-" + u.ns,
		extra: []string{"--rate-reserve", fmt.Sprintf("%.0f%%", reserveShare*100)}}
	for range procs {
		if _, err := w.startRun(ctx, cfg); err != nil {
			return err
		}
	}
	otherBefore := w.emu.OtherToolStats()
	if u.otherShare > 0 {
		w.emu.SetOtherToolRate(u.otherShare * float64(u.quota) / u.window.Seconds())
		// One window of the other tool alone: the backfill starts in its
		// steady state.
		select {
		case <-time.After(u.window):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.emu.ResetStats()
	u.timeline = w.sample(100 * time.Millisecond)
	duringCtx, stopDuring := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if during != nil {
		wg.Add(1)
		go func() { defer wg.Done(); during(duringCtx, u) }()
	}
	b.logf("backfill of %d scripts in %s: %d `run` process(es) at --rate-limit %s, other tool at %.0f%% of %d/%s",
		u.n, u.ns, procs, rate, u.otherShare*100, u.quota, u.window)
	sum, err := w.backfill(ctx, cfg, u.ns, fmt.Sprintf("bench-%s-%d", u.ns, time.Now().Unix()))
	u.backfillEnd = time.Now()
	if err == nil && during != nil {
		wg.Wait() // the live events land after the backfill, or not at all
	}
	stopDuring()
	wg.Wait()
	u.timeline.stop()
	w.emu.SetOtherToolRate(0)
	if err != nil {
		return err
	}
	u.sum = sum
	st := w.emu.Stats()
	u.calls, u.throttled, u.blocks = st.Total, st.Throttled, st.RateBlocks
	after := w.emu.OtherToolStats()
	u.other = cfapitest.OtherToolStats{Accepted: after.Accepted - otherBefore.Accepted, RateLimited: after.RateLimited - otherBefore.RateLimited,
		Blocks: after.Blocks - otherBefore.Blocks}
	for i := 1; i <= u.n; i++ {
		bs, _ := w.emu.Bindings(cfapitest.DefaultAccount, u.ns, cfapitest.TenantName(i))
		if _, ok := wire.Bindings(bs).ByName("ASSETS"); ok {
			u.converged++
		}
	}
	return nil
}

// rows429 and rowConverged are the rows every scenario of the user's
// budget has. A block of the token refuses every request of both sides
// for a window, so one block shows as many 429s on both sides; the
// blocks row says how many blocks there were and whose request found the
// window full (which says who came first, not who filled it: the other
// tool alone never fills it here, its peak share is below the quota less
// the reserve).
func (u *userBudget) rows429(s string) []row {
	return []row{
		newRow(s, "429 answers: to the reconciler / to the other tool", fmt.Sprintf("%d / %d", u.throttled, u.other.RateLimited),
			"0 / 0", u.throttled == 0 && u.other.RateLimited == 0),
		newRow(s, "blocks of the token, started by a request of: the reconciler / the other tool", fmt.Sprintf("%d / %d", u.blocks, u.other.Blocks),
			"0 / 0", u.blocks == 0 && u.other.Blocks == 0),
	}
}

func (u *userBudget) rowConverged(s string) row {
	return newRow(s, "scripts converged (binding present in the emulator)", fmt.Sprintf("%d / %d", u.converged, u.n), "all", u.converged == u.n)
}

// sharedWithOtherTool is scenario 6 with procs `run` processes: another
// tool spends a steady share of the user's quota while the processes,
// each configured with the whole quota, add a binding to every script.
func (b *bench) sharedWithOtherTool(ctx context.Context, procs int) ([]row, error) {
	o := b.o
	u := &userBudget{ns: fmt.Sprintf("user-%d", procs), n: o.userScripts, quota: o.userQuota, window: o.userWindow, otherShare: o.otherShare}
	rate := fmt.Sprintf("%d/%s", u.quota, u.window)
	if err := b.runUserBudget(ctx, u, procs, rate, nil); err != nil {
		return nil, err
	}
	wall := u.sum.wall()
	floor := time.Duration(float64(u.calls) / u.allowedRate() * float64(time.Second))
	rows := []row{
		newRow("6", fmt.Sprintf("%d × `run` at --rate-limit %s, other tool %.0f%% of it, %d scripts: API calls", procs, rate, u.otherShare*100, u.n),
			fmt.Sprint(u.calls), "", true),
		newRow("6", fmt.Sprintf("wall (ratio to calls ÷ (quota − %.0f%% reserve − other) = %s)", reserveShare*100, floor.Round(10*time.Millisecond)),
			fmt.Sprintf("%s (%.3f)", wall.Round(10*time.Millisecond), wall.Seconds()/floor.Seconds()), "", true),
		newRow("6", "other tool's requests accepted", fmt.Sprint(u.other.Accepted), "", true),
	}
	return append(append(rows, u.rows429("6")...), u.rowConverged("6")), nil
}

// otherToolBurst is scenario 7: the other tool adds a burst to its steady
// share once 30% of the backfill is written; live events are published
// during the burst. The reconciler slows during it and recovers after.
func (b *bench) otherToolBurst(ctx context.Context) ([]row, error) {
	o := b.o
	u := &userBudget{ns: "burst", n: o.burstScripts, quota: o.userQuota, window: o.userWindow, otherShare: o.otherShare}
	rate := fmt.Sprintf("%d/%s", u.quota, u.window)
	during := func(ctx context.Context, u *userBudget) {
		w := b.w
		for w.emu.Stats().Writes < u.n*3/10 {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		w.emu.SetOtherToolRate((u.otherShare + o.burstShare) * float64(u.quota) / u.window.Seconds())
		u.burstStart = time.Now()
		start := make(chan struct{})
		close(start)
		var lat []time.Duration
		done := make(chan struct{})
		go func() {
			defer close(done)
			if o.burstLive > 0 {
				lat = b.liveEvents(ctx, u.ns, u.n, o.burstLive, o.burstFor/time.Duration(o.burstLive), start)
			}
		}()
		select {
		case <-time.After(time.Until(u.burstStart.Add(o.burstFor))):
		case <-ctx.Done():
		}
		w.emu.SetOtherToolRate(u.otherShare * float64(u.quota) / u.window.Seconds())
		u.burstEnd = time.Now()
		<-done
		u.lat = lat
	}
	if err := b.runUserBudget(ctx, u, 1, rate, during); err != nil {
		return nil, err
	}
	if u.burstStart.IsZero() || u.burstEnd.IsZero() {
		return nil, fmt.Errorf("scenario 7: the backfill ended before the burst began; raise --burst-scripts")
	}
	if u.burstEnd.After(u.backfillEnd) {
		return nil, fmt.Errorf("scenario 7: the backfill ended %s before the burst did; raise --burst-scripts or shorten --burst",
			u.burstEnd.Sub(u.backfillEnd).Round(100*time.Millisecond))
	}
	d := o.burstFor
	before := u.timeline.rate(u.burstStart.Add(-d), u.burstStart)
	during2 := u.timeline.rate(u.burstStart, u.burstEnd)
	afterFrom := u.burstEnd.Add(u.window)
	afterTo := min64(afterFrom.Add(d), u.backfillEnd)
	after := 0.0
	if afterTo.Sub(afterFrom) >= u.window {
		after = u.timeline.rate(afterFrom, afterTo)
	}
	burstAllowed := float64(u.quota) * (1 - reserveShare - u.otherShare - o.burstShare) / u.window.Seconds()
	rows := []row{
		newRow("7", fmt.Sprintf("`run` at --rate-limit %s, other tool %.0f%% + a burst of %.0f%% for %s, %d scripts: API calls", rate, u.otherShare*100, o.burstShare*100, d, u.n),
			fmt.Sprint(u.calls), "", true),
		newRow("7", fmt.Sprintf("reconciler's rate before the burst (%s before; allowed %.0f/s)", d, u.allowedRate()), fmt.Sprintf("%.1f/s", before), "", true),
		newRow("7", fmt.Sprintf("reconciler's rate during the burst (allowed %.0f/s)", burstAllowed), fmt.Sprintf("%.1f/s", during2), "< before", during2 < before),
		newRow("7", fmt.Sprintf("reconciler's rate after the burst (from a window after its end, for %s)", afterTo.Sub(afterFrom).Round(100*time.Millisecond)),
			fmt.Sprintf("%.1f/s", after), "≥ 0.9 × before", after >= 0.9*before),
	}
	// The other tool alone never fills the window: a block needs the
	// reconciler's requests too.
	peak := u.otherShare + o.burstShare
	rows = append(rows, newRow("7", "the other tool alone at its peak (steady share + burst), of the quota",
		fmt.Sprintf("%.0f%%", peak*100), fmt.Sprintf("< %.0f%%", (1-reserveShare)*100), peak < 1-reserveShare))
	rows = append(append(rows, u.rows429("7")...), u.rowConverged("7"))
	if o.burstLive > 0 {
		landed := fmt.Sprintf("%d / %d", len(u.lat), o.burstLive)
		rows = append(rows, newRow("7", "live events published during the burst: landed", landed, "all", len(u.lat) == o.burstLive))
		if len(u.lat) > 0 {
			p50, p99 := percentiles(u.lat)
			rows = append(rows, newRow("7", "live events during the burst, publish → applied: p50 / p99",
				fmt.Sprintf("%s / %s", p50.Round(time.Millisecond), p99.Round(time.Millisecond)), "p99 ≤ 5s", p99 <= 5*time.Second))
		}
	}
	return rows, nil
}

// autoAlone is scenario 8: no other tool, `--rate-limit auto` (run and
// backfill) against the API's policy alone; the wall time must come within
// 5% of calls ÷ (quota − reserve).
func (b *bench) autoAlone(ctx context.Context) ([]row, error) {
	o := b.o
	u := &userBudget{ns: "auto", n: o.autoScripts, quota: o.autoQuota, window: o.autoWindow}
	if err := b.runUserBudget(ctx, u, 1, "auto", nil); err != nil {
		return nil, err
	}
	wall := u.sum.wall()
	ideal := time.Duration(float64(u.calls) / u.allowedRate() * float64(time.Second))
	ratio := wall.Seconds() / ideal.Seconds()
	return []row{
		newRow("8", fmt.Sprintf("`run` and backfill at --rate-limit auto, API %d/%s, no other tool, %d scripts: API calls", u.quota, u.window, u.n),
			fmt.Sprint(u.calls), "", true),
		newRow("8", fmt.Sprintf("wall ÷ (calls ÷ (quota − %.0f%% reserve) = %s)", reserveShare*100, ideal.Round(10*time.Millisecond)),
			fmt.Sprintf("%s (%.3f)", wall.Round(10*time.Millisecond), ratio), "≤ 1.05", ratio <= 1.05),
		newRow("8", "429 answers to the reconciler", fmt.Sprint(u.throttled), "0", u.throttled == 0),
		u.rowConverged("8"),
	}, nil
}

func min64(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// timeline samples the emulator's count of the reconciler's requests.
type timeline struct {
	mu      sync.Mutex
	at      []time.Time
	total   []int
	stopped chan struct{}
	done    chan struct{}
}

// sample records the emulator's Stats().Total every period until stop.
func (w *world) sample(period time.Duration) *timeline {
	tl := &timeline{stopped: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tl.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			n := w.emu.Stats().Total
			tl.mu.Lock()
			tl.at, tl.total = append(tl.at, time.Now()), append(tl.total, n)
			tl.mu.Unlock()
			select {
			case <-tl.stopped:
				return
			case <-t.C:
			}
		}
	}()
	return tl
}

func (tl *timeline) stop() {
	close(tl.stopped)
	<-tl.done
}

// rate is the requests per second between from and to, from the samples
// nearest to them.
func (tl *timeline) rate(from, to time.Time) float64 {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	at := func(t time.Time) (time.Time, int) {
		i := 0
		for i+1 < len(tl.at) && !tl.at[i+1].After(t) {
			i++
		}
		return tl.at[i], tl.total[i]
	}
	t0, n0 := at(from)
	t1, n1 := at(to)
	if !t1.After(t0) {
		return 0
	}
	return float64(n1-n0) / t1.Sub(t0).Seconds()
}
