package budget_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/jobs/budget"
	"github.com/reconciler/reconciler/internal/testutil"
)

// The tests in this file measure real time through the emulator, so they
// do not call t.Parallel. Each "process" has its own NATS connection,
// budget source, limiter and client, and is configured with the full
// budget; the emulator enforces a strict sliding window of that budget and
// blocks the token when it is exceeded. Time is measured in requests: the
// tests wait for the emulator to count so many, never for a duration.

const (
	testBudget = 100
	testWindow = time.Second
	goroutines = 8 // per process
	token      = "tok-SHARED-secret-1"
)

func testConfig() budget.Config {
	return budget.Config{Budget: testBudget, Window: testWindow, OpTimeout: 300 * time.Millisecond}
}

// waitRequests waits until the emulator has seen n requests in all.
func waitRequests(t *testing.T, total func() int, n int) {
	t.Helper()
	testutil.Eventually(t, time.Duration(n/testBudget+10)*testWindow, func() bool { return total() >= n },
		"the emulator did not see %d requests", n)
}

// TestProcessesShareOneBudget: two and three processes, each configured
// with the full budget of 100 requests per second, hammer one token for
// five windows: the API never answers 429, no window holds more than the
// budget, and together they use it (91–97/s measured on a 2-core machine
// at load 5–9; the budget leaves 96.6/s after the burst and margins).
func TestProcessesShareOneBudget(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d processes", n), func(t *testing.T) {
			natsURL := startNATS(t)
			ensureBucket(t, natsURL)
			srv, base := startAPI(t, token, testBudget, testWindow)
			var ps []*proc
			for i := range n {
				ps = append(ps, newProc(t, fmt.Sprintf("p%d", i), natsURL, base, token, testConfig()))
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for _, p := range ps {
				p.hammer(ctx, &wg, goroutines)
			}
			waitRequests(t, func() int { return srv.Stats().Total }, 5*testBudget)
			cancel()
			wg.Wait()

			f := measure(t, srv, testWindow)
			st := sumStats(ps...)
			t.Logf("%d processes: %d requests, %.1f/s (budget %d per %s, source rate %.1f/s), busiest window %d, %d × 429; "+
				"%d reservations for %d tokens, %d conflicts, %d expired (latest hand-out %s), %d errors",
				n, f.requests, f.perSecond, testBudget, testWindow, ps[0].src.Rate(), f.peak, f.rateLimited,
				st.Reservations, st.Granted, st.Conflicts, st.Expired, st.MaxLate, st.Errors)
			for _, p := range ps {
				t.Logf("  %s sent %d", p.name, p.released.Load())
				if p.released.Load() == 0 {
					t.Errorf("%s sent nothing", p.name)
				}
			}
			if f.throttled != 0 {
				t.Errorf("the API answered %d × 429 (%d from the rate limit)", f.throttled, f.rateLimited)
			}
			if f.peak > testBudget {
				t.Errorf("%d requests within one window, over the budget of %d", f.peak, testBudget)
			}
			// The budget leaves 96.6/s after the burst and margins; tokens
			// a CPU-starved process hands out too late are thrown away
			// (Expired), so the measured rate depends on the machine's
			// load: the log reports it. The check is coarse: a budget
			// divided among the processes would give 50/s or 33/s.
			if f.perSecond < 0.85*testBudget {
				t.Errorf("combined rate %.1f/s, more than 15%% under the budget of %d/s", f.perSecond, testBudget)
			}
		})
	}
}

// TestChildProcess is not a test: TestSIGKILLedProcess runs the test
// binary again as a child that runs it, to have a real second OS process.
func TestChildProcess(t *testing.T) {
	natsURL := os.Getenv("BUDGET_TEST_CHILD_NATS")
	if natsURL == "" {
		t.Skip("runs only as the child process of TestSIGKILLedProcess")
	}
	p := newProc(t, "child", natsURL, os.Getenv("BUDGET_TEST_CHILD_API"), token, testConfig())
	var wg sync.WaitGroup
	p.hammer(context.Background(), &wg, goroutines)
	testutil.Eventually(t, time.Minute, func() bool { return p.released.Load() > 0 }, "child never sent")
	fmt.Println("CHILD SENDING")
	for {
		// Report what the child holds, so the parent knows it dies with
		// reserved tokens in hand.
		fmt.Printf("CHILD HELD %d\n", p.src.Stats().Held)
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSIGKILLedProcess: a real second OS process shares the budget with
// two in this one and is killed with SIGKILL mid-run, holding reserved
// tokens. The others never exceed the budget and take over its share.
func TestSIGKILLedProcess(t *testing.T) {
	natsURL := startNATS(t)
	ensureBucket(t, natsURL)
	srv, base := startAPI(t, token, testBudget, testWindow)
	total := func() int { return srv.Stats().Total }

	child := exec.Command(os.Args[0], "-test.run=^TestChildProcess$")
	child.Env = append(os.Environ(), "BUDGET_TEST_CHILD_NATS="+natsURL, "BUDGET_TEST_CHILD_API="+base)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	var mu sync.Mutex
	sending, maxHeld, lastHeld := false, 0, 0
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			mu.Lock()
			switch line := sc.Text(); {
			case line == "CHILD SENDING":
				sending = true
			case strings.HasPrefix(line, "CHILD HELD "):
				n, _ := strconv.Atoi(strings.TrimPrefix(line, "CHILD HELD "))
				maxHeld, lastHeld = max(maxHeld, n), n
			}
			mu.Unlock()
		}
	}()
	testutil.Eventually(t, time.Minute, func() bool { mu.Lock(); defer mu.Unlock(); return sending }, "the child never sent")

	a := newProc(t, "a", natsURL, base, token, testConfig())
	b := newProc(t, "b", natsURL, base, token, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	a.hammer(ctx, &wg, goroutines)
	b.hammer(ctx, &wg, goroutines)
	// Two windows with all three, then SIGKILL.
	waitRequests(t, total, total()+2*testBudget)
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	killedAt := time.Now()
	atKill := total()
	// Three more windows for the survivors.
	waitRequests(t, total, atKill+3*testBudget)
	cancel()
	wg.Wait()

	f := measure(t, srv, testWindow)
	before := measureBetween(t, srv, testWindow, time.Time{}, killedAt)
	after := measureBetween(t, srv, testWindow, killedAt.Add(testWindow), time.Time{})
	mu.Lock()
	held, last := maxHeld, lastHeld
	mu.Unlock()
	t.Logf("%d requests, busiest window %d (budget %d), %d × 429; the child held up to %d reserved tokens (%d at its last report before the kill); "+
		"three processes before the kill: %.1f/s, the two survivors after it: %.1f/s",
		f.requests, f.peak, testBudget, f.rateLimited, held, last, before.perSecond, after.perSecond)
	if f.throttled != 0 {
		t.Errorf("the API answered %d × 429", f.throttled)
	}
	if f.peak > testBudget {
		t.Errorf("%d requests within one window, over the budget of %d", f.peak, testBudget)
	}
	// Coarse: a dead process must not hold the budget hostage (a third of
	// it would be missing). Compared with the rate before the kill, so the
	// machine's load counts on both sides.
	if after.perSecond < 0.85*before.perSecond {
		t.Errorf("after the kill the survivors sent %.1f/s, the three before it %.1f/s", after.perSecond, before.perSecond)
	}
}

// TestPauseReachesEveryProcess: one process gets a 429 with Retry-After;
// the other processes learn of the pause and send nothing until it ends.
func TestPauseReachesEveryProcess(t *testing.T) {
	natsURL := startNATS(t)
	ensureBucket(t, natsURL)
	srv, base := startAPI(t, token, testBudget, testWindow)
	total := func() int { return srv.Stats().Total }
	var ps []*proc
	for i := range 3 {
		ps = append(ps, newProc(t, fmt.Sprintf("p%d", i), natsURL, base, token, testConfig()))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range ps {
		p.hammer(ctx, &wg, goroutines)
	}
	waitRequests(t, total, testBudget)
	srv.FailNext(1, 429, 971, time.Second) // the next request, whoever sends it
	testutil.Eventually(t, 10*time.Second, func() bool { return srv.Stats().Throttled == 1 }, "no 429 sent")
	at := total()
	waitRequests(t, total, at+2*testBudget) // the pause and a window after it
	cancel()
	wg.Wait()

	f := measure(t, srv, testWindow)
	var t429 time.Time
	for _, r := range srv.RequestLog() {
		if r.Status == 429 {
			t429 = r.Time
		}
	}
	during := 0
	for _, a := range srv.Stats().Arrivals() {
		if a.After(t429) && a.Before(t429.Add(time.Second)) {
			during++
		}
	}
	var got429 *proc
	for _, p := range ps {
		st := p.src.Stats()
		t.Logf("%s: 429s %d, pauses sent %d, seen %d, released while it knew of a pause %d", p.name,
			p.rateLimited.Load(), st.PausesSent, st.PausesSeen, p.releasedWhilePaused.Load())
		if p.rateLimited.Load() > 0 {
			got429 = p
		}
	}
	t.Logf("%d requests arrived during the 1 s pause; busiest window %d; %d × 429 from the rate limit", during, f.peak, f.rateLimited)
	if got429 == nil {
		t.Fatal("no process saw the 429")
	}
	for _, p := range ps {
		if p != got429 && p.src.Stats().PausesSeen == 0 {
			t.Errorf("%s never learned of the pause", p.name)
		}
		if n := p.releasedWhilePaused.Load(); n != 0 {
			t.Errorf("%s let %d requests go while it knew of a pause", p.name, n)
		}
	}
	// How many arrived in the second after the 429 is only logged: it
	// depends on the machine's speed. What the pause promises is causal, and
	// checked above: every process learned of it, and none let a request go
	// while it knew of it.
	if f.rateLimited != 0 || f.peak > testBudget {
		t.Errorf("busiest window %d, %d × 429 from the rate limit", f.peak, f.rateLimited)
	}
}

// TestTwoTokensTwoBudgets: processes of two tokens share one NATS and one
// bucket but not a budget: each token's API sees its full budget, and no
// key reveals a token.
func TestTwoTokensTwoBudgets(t *testing.T) {
	const tokenX, tokenY = "tok-X-secret", "tok-Y-secret"
	natsURL := startNATS(t)
	ensureBucket(t, natsURL)
	srvX, baseX := startAPI(t, tokenX, testBudget, testWindow)
	srvY, baseY := startAPI(t, tokenY, testBudget, testWindow)
	ps := []*proc{
		newProc(t, "x1", natsURL, baseX, tokenX, testConfig()),
		newProc(t, "x2", natsURL, baseX, tokenX, testConfig()),
		newProc(t, "y1", natsURL, baseY, tokenY, testConfig()),
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range ps {
		p.hammer(ctx, &wg, goroutines)
	}
	waitRequests(t, func() int { return min(srvX.Stats().Total, srvY.Stats().Total) }, 4*testBudget)
	cancel()
	wg.Wait()
	for _, c := range []struct {
		name string
		f    figures
	}{{"X", measure(t, srvX, testWindow)}, {"Y", measure(t, srvY, testWindow)}} {
		t.Logf("token %s: %d requests, %.1f/s, busiest window %d, %d × 429", c.name, c.f.requests, c.f.perSecond, c.f.peak, c.f.throttled)
		if c.f.throttled != 0 || c.f.peak > testBudget {
			t.Errorf("token %s: busiest window %d, %d × 429", c.name, c.f.peak, c.f.throttled)
		}
		if c.f.perSecond < 0.85*testBudget {
			t.Errorf("token %s got %.1f/s of its own %d/s: the tokens share a budget", c.name, c.f.perSecond, testBudget)
		}
	}

	js := connectJS(t, natsURL)
	kv, err := js.KeyValue(context.Background(), budget.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for k := range keys.Keys() {
		got = append(got, k)
		for _, tok := range []string{tokenX, tokenY} {
			e, err := kv.Get(context.Background(), k)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(k, tok) || strings.Contains(string(e.Value()), tok) {
				t.Errorf("key %s reveals a token", k)
			}
		}
	}
	want := map[string]bool{budget.KeyFor(tokenX): true, budget.KeyFor(tokenY): true}
	for _, k := range got {
		delete(want, k)
	}
	if len(want) != 0 || len(got) != 2 {
		t.Errorf("keys %v, want one per token", got)
	}
}

// TestLostNATSStopsSending: a process whose NATS connection is cut sends
// at most the tokens it held at that moment (no local fallback) while the
// other process takes the budget; it sends again once reconnected.
func TestLostNATSStopsSending(t *testing.T) {
	natsURL := startNATS(t)
	ensureBucket(t, natsURL)
	srv, base := startAPI(t, token, testBudget, testWindow)
	total := func() int { return srv.Stats().Total }
	u, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, u.Host)
	a := newProc(t, "a", natsURL, base, token, testConfig())
	b := newProc(t, "b", px.URL(), base, token, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	a.hammer(ctx, &wg, goroutines)
	b.hammer(ctx, &wg, goroutines)
	waitRequests(t, total, testBudget)
	testutil.Eventually(t, 10*time.Second, func() bool { return b.released.Load() > 0 }, "b never sent")

	px.Cut()
	testutil.Eventually(t, 10*time.Second, func() bool { return !b.nc.IsConnected() }, "b still connected")
	sentAtCut, heldAtCut := b.released.Load(), b.src.Stats().Held
	aAtCut := a.released.Load()
	// Two windows' worth of a's requests.
	testutil.Eventually(t, 30*time.Second, func() bool { return a.released.Load() >= aAtCut+2*testBudget*9/10 },
		"a did not take over the budget")
	sentDuringCut := b.released.Load() - sentAtCut
	errorsDuringCut := b.src.Stats().Errors

	px.Restore()
	testutil.Eventually(t, 30*time.Second, func() bool { return b.released.Load() >= sentAtCut+sentDuringCut+10 },
		"b did not send again after reconnecting")
	cancel()
	wg.Wait()
	f := measure(t, srv, testWindow)
	t.Logf("b held %d tokens at the cut and sent %d during it (%d NATS errors); a sent %d meanwhile; busiest window %d, %d × 429",
		heldAtCut, sentDuringCut, errorsDuringCut, a.released.Load()-aAtCut, f.peak, f.throttled)
	// +1: a token the pump handed out just before the snapshot, whose
	// caller had not yet been counted.
	if sentDuringCut > int64(heldAtCut)+1 {
		t.Errorf("b sent %d requests without NATS, holding %d tokens at the cut", sentDuringCut, heldAtCut)
	}
	if errorsDuringCut == 0 {
		t.Error("b's source saw no NATS error during the cut")
	}
	if f.throttled != 0 || f.peak > testBudget {
		t.Errorf("busiest window %d, %d × 429", f.peak, f.throttled)
	}
}

// TestOpenNeedsTheBucket: Open creates nothing and names the missing
// bucket; bad settings are refused naming the field.
func TestOpenNeedsTheBucket(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	cfg := budget.Config{Credential: token, Budget: 100, Window: time.Second, Bucket: "budget_x"}
	_, err := budget.Open(context.Background(), js, cfg)
	if !errors.Is(err, jetstream.ErrBucketNotFound) || !strings.Contains(err.Error(), "budget_x") {
		t.Fatalf("Open without the bucket: %v", err)
	}
	if _, err := js.KeyValue(context.Background(), "budget_x"); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("Open created the bucket: %v", err)
	}
	for _, c := range []struct {
		field string
		cfg   budget.Config
	}{
		{"Credential", budget.Config{Budget: 100, Window: time.Second}},
		{"Budget", budget.Config{Credential: token, Budget: 1, Window: time.Second}},
		{"Window", budget.Config{Credential: token, Budget: 100}},
		{"MaxClockSkew", budget.Config{Credential: token, Budget: 100, Window: time.Second, MaxClockSkew: -1}},
	} {
		_, err := budget.Ensure(context.Background(), js, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: err = %v, want one naming the field", c.field, err)
		}
		if err != nil && strings.Contains(err.Error(), token) {
			t.Errorf("%s: the error reveals the token: %v", c.field, err)
		}
	}
	src, err := budget.Ensure(context.Background(), js, budget.Config{Credential: token, Budget: 100, Window: time.Second, Bucket: "budget_x"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if strings.Contains(src.Key(), token) || src.Key() != budget.KeyFor(token) || budget.KeyFor(token) == budget.KeyFor(token+"x") {
		t.Errorf("key %q", src.Key())
	}
	src2, err := budget.Open(context.Background(), js, cfg)
	if err != nil {
		t.Fatalf("Open after Ensure: %v", err)
	}
	src2.Close()
	if err := src.Take(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	src.Close()
	if err := src.Take(context.Background(), 1); !errors.Is(err, budget.ErrClosed) {
		t.Errorf("Take after Close: %v", err)
	}
}

// costFigures is what sharing the budget cost over a run.
type costFigures struct {
	f            figures
	st           budget.Stats
	perToken     time.Duration // compare-and-set time per token handed out
	casPerToken  float64
	conflictRate float64 // conflicts per reservation
	meanCAS      time.Duration
}

// runShared runs procs processes on one token with the given budget per
// second until the emulator has seen requests, and returns the figures.
func runShared(tb testing.TB, perSecond, procs, requests int) costFigures {
	natsURL := startNATS(tb)
	ensureBucket(tb, natsURL)
	srv, base := startAPI(tb, token, perSecond, time.Second)
	var ps []*proc
	for i := range procs {
		ps = append(ps, newProc(tb, fmt.Sprintf("p%d", i), natsURL, base, token,
			budget.Config{Budget: perSecond, Window: time.Second, OpTimeout: 300 * time.Millisecond}))
	}
	if b, ok := tb.(*testing.B); ok {
		b.ResetTimer()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range ps {
		p.hammer(ctx, &wg, goroutines)
	}
	testutil.Eventually(tb, time.Duration(requests/perSecond+30)*time.Second, func() bool { return srv.Stats().Total >= requests },
		"the emulator did not see %d requests", requests)
	cancel()
	wg.Wait()
	c := costFigures{f: measure(tb, srv, time.Second), st: sumStats(ps...)}
	if c.st.Granted > 0 {
		c.perToken = c.st.CASTime / time.Duration(c.st.Granted)
		c.casPerToken = float64(c.st.Reservations+c.st.Conflicts) / float64(c.st.Granted)
	}
	if c.st.Reservations > 0 {
		c.conflictRate = float64(c.st.Conflicts) / float64(c.st.Reservations)
		c.meanCAS = c.st.CASTime / time.Duration(c.st.Reservations+c.st.Conflicts)
	}
	return c
}

// TestCostAt200PerSecond: three processes at the benchmark's budget of 200
// requests per second stay within it; the log gives what the coordination
// costs per token.
func TestCostAt200PerSecond(t *testing.T) {
	c := runShared(t, 200, 3, 3*200)
	t.Logf("3 processes at 200/s: %d requests, %.1f/s, busiest second %d, %d × 429", c.f.requests, c.f.perSecond, c.f.peak, c.f.throttled)
	t.Logf("cost: %d reservations for %d tokens (%.2f writes per token), %d conflicts (%.1f%% of reservations), "+
		"mean compare-and-set %s, %s of compare-and-set per token, %d expired, latest hand-out %s",
		c.st.Reservations, c.st.Granted, c.casPerToken, c.st.Conflicts, 100*c.conflictRate, c.meanCAS.Round(time.Microsecond),
		c.perToken.Round(time.Microsecond), c.st.Expired, c.st.MaxLate.Round(time.Microsecond))
	if c.f.throttled != 0 || c.f.peak > 200 {
		t.Errorf("busiest second %d (budget 200), %d × 429", c.f.peak, c.f.throttled)
	}
}

// BenchmarkSharedBudget200 measures the cost per token of three processes
// sharing a budget of 200 requests per second (one op = one request).
func BenchmarkSharedBudget200(b *testing.B) {
	c := runShared(b, 200, 3, max(b.N, 200))
	b.ReportMetric(float64(c.perToken.Nanoseconds()), "cas-ns/token")
	b.ReportMetric(c.casPerToken, "writes/token")
	b.ReportMetric(c.conflictRate, "conflicts/reservation")
	b.ReportMetric(float64(c.meanCAS.Nanoseconds()), "ns/cas")
	b.ReportMetric(c.f.perSecond, "req/s")
	b.ReportMetric(float64(c.f.throttled), "429s")
}

// TestForeignPauseIsCapped: a pause written into the key by a process with
// a clock an hour ahead (or an absurd Retry-After) holds the others back
// for at most a window.
func TestForeignPauseIsCapped(t *testing.T) {
	natsURL := startNATS(t)
	js := connectJS(t, natsURL)
	cfg := budget.Config{Credential: token, Budget: testBudget, Window: testWindow}
	src, err := budget.Ensure(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	kv, err := js.KeyValue(context.Background(), budget.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	pause := fmt.Sprintf(`{"tat":0,"paused_until":%d,"budget":%d,"window_ns":%d}`, before.Add(time.Hour).UnixNano(), testBudget, testWindow)
	if _, err := kv.Put(context.Background(), src.Key(), []byte(pause)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return !src.PausedUntil().IsZero() }, "the pause never arrived")
	if until := src.PausedUntil(); until.After(time.Now().Add(testWindow + testWindow/100)) {
		t.Fatalf("paused until %s, more than a window from now", until.Format(time.StampMilli))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := src.Take(ctx, 1); err != nil {
		t.Fatalf("Take after the capped pause: %v", err)
	}
	if !time.Now().After(src.PausedUntil()) {
		t.Error("a token was handed out during the pause")
	}
}
