package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs"
)

// benchFlags are the flags of `reconciler bench`.
type benchFlags struct {
	scripts    int
	bigScripts int
	budget     int
	bigBudget  int
	live       int
	storm      int
	stormOver  int
	only       string
	log        logFlags
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer, e env) error {
	var bf benchFlags
	f := newFlagSet("bench", e, stderr)
	f.IntVar(&bf.scripts, "scripts", 10000, "scenario 1: scripts in the backfill (30% need a change)")
	f.IntVar(&bf.bigScripts, "big-scripts", 100000, "scenario 2: scripts in the large backfill")
	f.IntVar(&bf.budget, "budget", 200, "scenario 1: API budget, requests per second (the emulator enforces it)")
	f.IntVar(&bf.bigBudget, "big-budget", 1000, "scenario 2: API budget, requests per second")
	f.IntVar(&bf.live, "live", 50, "scenario 3: live events published during scenario 1")
	f.IntVar(&bf.storm, "storm", 100000, "scenario 4: events in the storm")
	f.IntVar(&bf.stormOver, "storm-scripts", 1000, "scenario 4: scripts the storm is spread over")
	f.StringVar(&bf.only, "only", "", "run only these scenarios, comma-separated (1,2,4; 3 and 5 come with 1)")
	bf.log.register(f)
	f.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reconciler bench [flags]\n\nThe load benchmark: a NATS server and the API emulator in this process, `reconciler run` as a child process, and the scenarios of the backfill issue; prints a table.")
		f.PrintDefaults()
	}
	if err := f.parse(args); err != nil {
		return err
	}
	if err := bf.log.validate(f); err != nil {
		return err
	}
	log := bf.log.logger(stderr)
	b, err := newBench(ctx, log)
	if err != nil {
		return err
	}
	defer b.close()
	run := func(n string) bool { return bf.only == "" || slices.Contains(strings.Split(bf.only, ","), n) }
	var rows []benchRow
	if run("1") || run("3") || run("5") {
		r, err := b.backfill(ctx, "customers", bf.scripts, bf.budget, bf.live, false)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	if run("2") {
		r, err := b.backfill(ctx, "big", bf.bigScripts, bf.bigBudget, 0, true)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	if run("4") {
		r, err := b.stormScenario(ctx, bf.storm, bf.stormOver)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	fmt.Fprintf(stdout, "\n%-4s %-58s %16s %12s %s\n", "#", "measure", "value", "target", "met")
	for _, r := range rows {
		fmt.Fprintf(stdout, "%-4s %-58s %16s %12s %s\n", r.scenario, r.measure, r.value, r.target, r.met)
	}
	fmt.Fprintf(stdout, "\nmachine: %d CPUs, %s %s/%s\n", runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

type benchRow struct{ scenario, measure, value, target, met string }

func row(s, m, v, t string, ok bool) benchRow {
	met := "yes"
	if !ok {
		met = "NO"
	}
	if t == "" {
		met = ""
	}
	return benchRow{s, m, v, t, met}
}

// bench is the benchmark's world: a NATS server and the emulator in this
// process, and `reconciler run` as a child.
type bench struct {
	log     *zap.Logger
	dir     string
	ns      *server.Server
	natsURL string
	emu     *cfapitest.Server
	apiURL  string
	stopEmu context.CancelFunc
	nc      *nats.Conn
	js      jetstream.JetStream
	child   *exec.Cmd
	metrics string
}

func newBench(ctx context.Context, log *zap.Logger) (*bench, error) {
	b := &bench{log: log}
	var err error
	if b.dir, err = os.MkdirTemp("", "reconciler-bench-"); err != nil {
		return nil, err
	}
	// A separate NATS (not embedded in the reconciler), with the default
	// 1 MiB max_payload of an external server.
	b.ns, err = server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(b.dir, "nats"), NoLog: true, NoSigs: true})
	if err != nil {
		return nil, err
	}
	b.ns.Start()
	if !b.ns.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("bench NATS server did not start")
	}
	b.natsURL = b.ns.ClientURL()
	if b.nc, err = nats.Connect(b.natsURL); err != nil {
		return nil, err
	}
	if b.js, err = jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(8192)); err != nil {
		return nil, err
	}
	b.emu = cfapitest.New(cfapitest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.apiURL = "http://" + ln.Addr().String() + b.emu.Prefix()
	emuCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.stopEmu = cancel
	go func() { _ = b.emu.Serve(emuCtx, ln) }()
	return b, nil
}

func (b *bench) close() {
	b.stopChild()
	if b.nc != nil {
		b.nc.Close()
	}
	if b.stopEmu != nil {
		b.stopEmu()
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
	_ = os.RemoveAll(b.dir)
}

// startChild starts `reconciler run` with budget requests per second.
func (b *bench) startChild(budget int) error {
	b.stopChild()
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	b.metrics = freeIfTaken("127.0.0.1:0")
	rate := fmt.Sprintf("%d/1s", budget)
	if budget <= 0 {
		rate = "1000000/1s"
	}
	b.child = exec.Command(exe, "run", "--nats-url", b.natsURL, "--api-base-url", b.apiURL, "--rate-limit", rate,
		"--metrics-addr", b.metrics, "--log-level", "warn", "--log-format", "console", "--max-writes", "16")
	b.child.Env = append(os.Environ(), "RECONCILER_TEST_MAIN=1", "CLOUDFLARE_API_TOKEN=bench")
	b.child.Stderr = os.Stderr
	if err := b.child.Start(); err != nil {
		return err
	}
	// Ready when /readyz answers.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := httpGet("http://" + b.metrics + "/readyz"); err == nil && strings.HasPrefix(resp, "ready") {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("reconciler run did not become ready")
}

func (b *bench) stopChild() {
	if b.child == nil || b.child.Process == nil {
		return
	}
	_ = b.child.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = b.child.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = b.child.Process.Kill()
		<-done
	}
	b.child = nil
}

// procStats reads the child's peak RSS (VmHWM) and CPU time.
func (b *bench) procStats() (peakRSS int64, cpu time.Duration) {
	pid := b.child.Process.Pid
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				f := strings.Fields(line)
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				peakRSS = kb << 10
			}
		}
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(data)
		f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu = time.Duration(ut+st) * (time.Second / 100) // clock ticks (USER_HZ = 100)
	}
	return peakRSS, cpu
}

// peakUnacked samples the consumers' unacknowledged messages until stop.
func (b *bench) peakUnacked(ctx context.Context, stop <-chan struct{}) *atomic.Int64 {
	var peak atomic.Int64
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			n := int64(0)
			for _, c := range [][2]string{{"BINDINGS", "reconciler"}, {"BINDINGS_BACKFILL", "reconciler_backfill"}} {
				if cons, err := b.js.Consumer(ctx, c[0], c[1]); err == nil {
					if ci, err := cons.Info(ctx); err == nil {
						n += int64(ci.NumAckPending)
					}
				}
			}
			if n > peak.Load() {
				peak.Store(n)
			}
		}
	}()
	return &peak
}

// backfill runs scenario 1 (with 3 and 5) or 2: n scripts of which 30%
// need a change, applied by a backfill at budget requests per second.
func (b *bench) backfill(ctx context.Context, ns string, n, budget, live int, big bool) ([]benchRow, error) {
	fmt.Fprintf(os.Stderr, "bench: seeding %d tenants in %s\n", n, ns)
	already := func(i int) []cfapi.Binding {
		if i%10 < 7 { // 70% have what the patch asks already
			return []cfapi.Binding{cfapi.MustParseBinding(`{"type":"r2_bucket","name":"ASSETS","bucket_name":"bench-assets"}`)}
		}
		return nil
	}
	if err := b.emu.SeedVaried(cfapitest.DefaultAccount, ns, n, already); err != nil {
		return nil, err
	}
	b.emu.SetSlidingRateLimit(budget, time.Second, time.Second)
	if err := b.startChild(budget); err != nil {
		return nil, err
	}
	b.emu.ResetStats()
	patch := filepath.Join(b.dir, "patch.json")
	if err := os.WriteFile(patch, []byte(`{"upsert":[{"type":"r2_bucket","name":"ASSETS","bucket_name":"bench-assets"}]}`), 0o644); err != nil {
		return nil, err
	}
	bf := backfillFlags{namespace: ns, patchFile: patch, account: cfapitest.DefaultAccount, runID: fmt.Sprintf("bench-%s-%d", ns, time.Now().Unix()),
		output: "text", progress: "log"}
	bf.pipe.nats = natsFlags{url: b.natsURL, subjectPrefix: "bindings"}
	bf.pipe.api = apiFlags{baseURL: b.apiURL, maxWrites: 16, budget: budget, window: time.Second}
	// The listing draws from the budget the reconciler uses (same token).
	lim, closeLim, err := newLimiter(ctx, &bf.pipe.api, credentialSet{token: "bench"}, b.js, budgetShared, 1, b.log)
	if err != nil {
		return nil, err
	}
	defer closeLim()
	client, err := newAPIClient(&bf.pipe.api, credentialSet{token: "bench"}, lim, noHooks, time.Minute)
	if err != nil {
		return nil, err
	}
	src, err := bf.source(nil, client)
	if err != nil {
		return nil, err
	}
	conn, err := connectNATS(&bf.pipe.nats, false, b.log)
	if err != nil {
		return nil, err
	}
	defer conn.close(b.log, time.Second)
	stop := make(chan struct{})
	peak := b.peakUnacked(ctx, stop)
	_, cpuBefore := b.procStats()
	var lat []time.Duration
	var wg sync.WaitGroup
	if live > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); lat = b.liveEvents(ctx, ns, n, live) }()
	}
	start := time.Now()
	sum, err := bf.runOn(ctx, conn, io.Discard, src, b.log)
	wall := time.Since(start)
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	rss, cpuAfter := b.procStats()
	st := b.emu.Stats()
	lists := (n + cfapi.MaxListLimit - 1) / cfapi.MaxListLimit
	necessary := lists + n + sum.Changed
	floor := time.Duration(float64(necessary) / float64(budget) * float64(time.Second))
	liveReads, liveWrites := 2*len(lat), len(lat) // each live event: one read, one write
	calls := st.Total - liveReads - liveWrites
	var rows []benchRow
	if !big {
		rows = append(rows,
			row("1", fmt.Sprintf("backfill %d scripts (%d changed) at %d req/s: wall", n, sum.Changed, budget), wall.Round(10*time.Millisecond).String(), "", true),
			row("1", "wall ÷ floor (necessary calls ÷ budget)", fmt.Sprintf("%.3f", wall.Seconds()/floor.Seconds()), "≤ 1.03", wall.Seconds()/floor.Seconds() <= 1.03),
			row("1", fmt.Sprintf("calls ÷ necessary (%d)", necessary), fmt.Sprintf("%.3f", float64(calls)/float64(necessary)), "1.000", calls == necessary),
			row("1", "429 answers", strconv.Itoa(st.Throttled), "0", st.Throttled == 0),
		)
		if len(lat) > 0 {
			slices.Sort(lat)
			p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
			rows = append(rows,
				row("3", fmt.Sprintf("live events during the backfill (%d): p50", len(lat)), p50.Round(time.Millisecond).String(), "", true),
				row("3", "live events during the backfill: p99", p99.Round(time.Millisecond).String(), "≤ 5s", p99 <= 5*time.Second))
		}
		cpu := (cpuAfter - cpuBefore) / time.Duration(n)
		rows = append(rows, row("5", "reconciler CPU per reconcile (process, incl. HTTP/NATS client)", cpu.Round(time.Microsecond).String(), "≤ 50µs", cpu <= 50*time.Microsecond))
	} else {
		rows = append(rows,
			row("2", fmt.Sprintf("backfill %d scripts at %d req/s: wall", n, budget), wall.Round(time.Second).String(), "", true),
			row("2", "peak RSS of `reconciler run`", fmt.Sprintf("%.0f MiB", float64(rss)/(1<<20)), "≤ 150 MiB", rss <= 150<<20),
			row("2", "peak unacknowledged messages (both consumers)", strconv.FormatInt(peak.Load(), 10), "bounded", peak.Load() <= 2000),
			row("2", "429 answers", strconv.Itoa(st.Throttled), "0", st.Throttled == 0),
		)
	}
	if sum.Failed > 0 {
		return rows, fmt.Errorf("bench backfill: %d scripts failed", sum.Failed)
	}
	return rows, nil
}

// liveEvents publishes count live events to random tenants once the
// backfill is a fifth done, spread over a few seconds, and returns the
// time from each publish to its binding being live.
func (b *bench) liveEvents(ctx context.Context, ns string, n, count int) []time.Duration {
	for b.emu.Stats().Writes < n*3/10/5 {
		if ctx.Err() != nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	var mu sync.Mutex
	var out []time.Duration
	var wg sync.WaitGroup
	for i := 0; i < count; i++ {
		t := cfapitest.TenantName(rand.IntN(n) + 1)
		name := fmt.Sprintf("LIVE_%d", i)
		ev := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"bench-live-%d-%d","account_id":%q,"dispatch_namespace":%q,"script":%q,"op":"patch","upsert":[{"type":"plain_text","name":%q,"text":"x"}]}`,
			time.Now().UnixNano(), i, cfapitest.DefaultAccount, ns, t, name)
		start := time.Now()
		if _, err := jobs.Publish(ctx, b.js, "bindings", strings.NewReader(ev), true); err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 2*time.Minute {
				bs, _ := b.emu.Bindings(cfapitest.DefaultAccount, ns, t)
				if _, ok := cfapi.Bindings(bs).ByName(name); ok {
					mu.Lock()
					out = append(out, time.Since(start))
					mu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	return out
}

// stormScenario is scenario 4: events over scripts, generations shuffled,
// published to a running reconciler with an unlimited budget.
func (b *bench) stormScenario(ctx context.Context, events, scripts int) ([]benchRow, error) {
	fmt.Fprintf(os.Stderr, "bench: storm of %d events over %d scripts\n", events, scripts)
	if err := b.emu.SeedVaried(cfapitest.DefaultAccount, "storm", scripts); err != nil {
		return nil, err
	}
	b.emu.SetSlidingRateLimit(0, 0, 0)
	// Publish the storm with no reconciler running (after one has set the
	// streams up), so that folding is measured from a backlog, apart from
	// the publisher's CPU.
	if err := b.startChild(0); err != nil {
		return nil, err
	}
	b.stopChild()
	b.emu.ResetStats()
	per := events / scripts
	var bodies [][]byte
	var subjects []string
	for s := 1; s <= scripts; s++ {
		gens := rand.Perm(per)
		for i := 0; i < per; i++ {
			t := cfapitest.TenantName(s)
			ev, _ := json.Marshal(map[string]any{"schema": jobs.SchemaV1, "id": fmt.Sprintf("storm-%d-%d", s, i), "account_id": cfapitest.DefaultAccount,
				"dispatch_namespace": "storm", "script": t, "generation": gens[i] + 1, "op": "patch",
				"upsert": []any{map[string]any{"type": "plain_text", "name": fmt.Sprintf("N%d", rand.IntN(5)), "text": strconv.Itoa(gens[i])}}})
			bodies = append(bodies, ev)
			subjects = append(subjects, jobs.Subject("bindings", cfapi.ScriptRef{AccountID: cfapitest.DefaultAccount, Namespace: "storm", Script: t}))
		}
	}
	idx := rand.Perm(len(bodies))
	stream, err := b.js.Stream(ctx, "BINDINGS")
	if err != nil {
		return nil, err
	}
	si, _ := stream.Info(ctx)
	first := si.State.LastSeq + 1
	start := time.Now()
	for i, k := range idx {
		m := nats.NewMsg(subjects[k])
		m.Data = bodies[k]
		if _, err := b.js.PublishMsgAsync(m); err != nil {
			return nil, err
		}
		if i%4000 == 3999 {
			<-b.js.PublishAsyncComplete()
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return nil, fmt.Errorf("storm: publishing did not complete")
	}
	published := time.Since(start)
	last := first + uint64(len(bodies)) - 1
	if err := b.startChild(0); err != nil {
		return nil, err
	}
	start = time.Now()
	cons, err := b.js.Consumer(ctx, "BINDINGS", "reconciler")
	if err != nil {
		return nil, err
	}
	var folded, settled time.Duration
	for {
		ci, err := cons.Info(ctx)
		if err == nil {
			if folded == 0 && ci.Delivered.Stream >= last && ci.NumPending == 0 {
				folded = time.Since(start)
			}
			if ci.AckFloor.Stream >= last && ci.NumAckPending == 0 {
				settled = time.Since(start)
				break
			}
		}
		if time.Since(start) > 10*time.Minute {
			return nil, fmt.Errorf("storm: not settled after 10 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := b.emu.Stats()
	reads := 0
	for _, c := range st.Requests["get_settings"] {
		reads += c
	}
	rss, _ := b.procStats()
	rate := float64(len(bodies)) / folded.Seconds()
	return []benchRow{
		row("4", fmt.Sprintf("storm %d events / %d scripts: published in", len(bodies), scripts), published.Round(time.Millisecond).String(), "", true),
		row("4", "events folded per second (from a backlog, external NATS)", fmt.Sprintf("%.0f", rate), "≥ 50000", rate >= 50000),
		row("4", "events settled (acknowledged) per second", fmt.Sprintf("%.0f", float64(len(bodies))/settled.Seconds()), "", true),
		row("4", "API reads ÷ scripts", fmt.Sprintf("%.3f", float64(reads)/float64(scripts)), "≤ 1.2", float64(reads)/float64(scripts) <= 1.2),
		row("4", "API writes ÷ scripts", fmt.Sprintf("%.3f", float64(st.Writes)/float64(scripts)), "≤ 1.2", float64(st.Writes)/float64(scripts) <= 1.2),
		row("4", "peak RSS of `reconciler run`", fmt.Sprintf("%.0f MiB", float64(rss)/(1<<20)), "≤ 150 MiB", rss <= 150<<20),
	}, nil
}

func httpGet(url string) (string, error) {
	c := &httpClient
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, resp.Body)
	return buf.String(), nil
}

var httpClient = http.Client{Timeout: 2 * time.Second}
