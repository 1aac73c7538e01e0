package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/progress"
)

// sandboxFlags are the flags of `reconciler sandbox`.
type sandboxFlags struct {
	pipe         runFlags
	tenants      int
	keep         bool
	metricsAddr  string
	emulatorAddr string
}

func (sf *sandboxFlags) register(f *flagSet) {
	sf.pipe.registerPipeline(f)
	f.integer(&sf.tenants, "tenants", "", 1000, "tenant scripts the emulator is seeded with")
	f.alias("seed-tenants", "tenants")
	f.BoolVar(&sf.keep, "keep", false, "stay up after the summary, until Ctrl-C, to publish events or deploy with wrangler")
	f.str(&sf.metricsAddr, "metrics-addr", "RECONCILER_METRICS_ADDR", "127.0.0.1:9464", "address of /metrics, /healthz and /readyz (a free port if taken)")
	f.str(&sf.emulatorAddr, "emulator-addr", "", "127.0.0.1:8787", "address of the API emulator (a free port if taken)")
}

func newSandboxCmd(a *app) *cobra.Command {
	var sf sandboxFlags
	cmd := &cobra.Command{
		Use:   "sandbox [--tenants N] [--keep] [flags]",
		Short: "everything in one process: embedded NATS, emulator with tenants, a demo backfill",
		Long: `Everything in one process, no account and no NATS install: embedded NATS, the
API emulator with seeded tenants, the reconciler, a demo backfill with live
events, and a summary. With --keep it stays up until Ctrl-C, to publish events
or deploy with wrangler against it.`,
		Example: `  reconciler sandbox
  reconciler sandbox --tenants 5000 --keep`,
	}
	f := commandFlags(cmd, sandboxEnv(a.env))
	sf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runSandbox(ctx, a, f, &sf) })
	return cmd
}

func runSandbox(ctx context.Context, a *app, f *flagSet, sf *sandboxFlags) error {
	stdout, stderr := a.stdout, a.stderr
	if err := f.noArgs(""); err != nil {
		return err
	}
	if err := sf.pipe.validate(f); err != nil {
		return err
	}
	if sf.tenants < 1 || sf.tenants > 100000 {
		return usagef("--tenants: must be between 1 and 100000, got %d", sf.tenants)
	}
	log := sf.pipe.log.logger(stderr)
	defer func() { _ = log.Sync() }()
	sb, err := sf.start(ctx, stdout, log)
	if err != nil {
		return err
	}
	defer sb.close(log)
	if err := sb.demo(ctx, sf, stdout, stderr, log); err != nil {
		return err
	}
	if !sf.keep {
		return nil
	}
	fmt.Fprintf(stdout, "\nThe sandbox stays up until Ctrl-C. Try:\n"+
		"  export CLOUDFLARE_API_BASE_URL=%s CLOUDFLARE_ACCOUNT_ID=%s NATS_URL=%s\n"+
		"  echo '{\"schema\":\"bindings.change/v1\",\"id\":\"try-1\",\"account_id\":\"%s\",\"dispatch_namespace\":\"customers\",\"script\":\"tenant-0001\",\"op\":\"patch\",\"upsert\":[{\"type\":\"plain_text\",\"name\":\"HELLO\",\"text\":\"world\"}]}' | reconciler publish -\n"+
		"  curl -s %s/accounts/%s/workers/dispatch/namespaces/customers/scripts/tenant-0001/settings\n",
		sb.apiURL, cfapitest.DefaultAccount, sb.conn.url, cfapitest.DefaultAccount, sb.apiURL, cfapitest.DefaultAccount)
	<-ctx.Done()
	return nil
}

// sandboxEnv gives the sandbox its own defaults: a budget scaled so the
// demo takes seconds (the emulator enforces the same), readable logs, and
// a fresh data directory.
func sandboxEnv(e env) env {
	return func(k string) string {
		if v := e(k); v != "" {
			return v
		}
		switch k {
		case "RECONCILER_RATE_LIMIT":
			return "400/1s"
		case "RECONCILER_LOG_FORMAT":
			return "console"
		case "RECONCILER_LOG_LEVEL":
			return "warn"
		}
		return ""
	}
}

// sandbox is the running sandbox.
type sandbox struct {
	emu      *cfapitest.Server
	apiURL   string
	conn     *natsConn
	metrics  *metricsServer
	runner   *jobs.Runner
	stopRun  func()
	tempDir  string
	stopEmu  context.CancelFunc
	emuDone  chan struct{}
	client   *cfapi.Client
	lim      *cfapi.Limiter // the client's, on the shared budget
	dataDir  string
	budget   string
	metricsU string
}

// start brings everything up on the requested ports, or free ones.
func (sf *sandboxFlags) start(ctx context.Context, stdout io.Writer, log *zap.Logger) (*sandbox, error) {
	sb := &sandbox{budget: sf.pipe.api.rateLimit}
	if sf.pipe.nats.dataDir == "./reconciler-data" || sf.pipe.nats.dataDir == "" {
		dir, err := os.MkdirTemp("", "reconciler-sandbox-")
		if err != nil {
			return nil, err
		}
		sb.tempDir, sf.pipe.nats.dataDir = dir, dir
	}
	sb.dataDir = sf.pipe.nats.dataDir
	// The emulator enforces the same budget, as the real API would.
	sb.emu = cfapitest.New(cfapitest.Options{RateLimit: sf.pipe.api.budget, RateWindow: sf.pipe.api.window,
		RateSliding: true, RateBlock: sf.pipe.api.window})
	if err := sb.emu.SeedVaried(cfapitest.DefaultAccount, "customers", sf.tenants); err != nil {
		return nil, err
	}
	ln, err := listenOrFree(sf.emulatorAddr)
	if err != nil {
		return nil, usagef("--emulator-addr: %v", err)
	}
	sb.apiURL = "http://" + ln.Addr().String() + sb.emu.Prefix()
	emuCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sb.stopEmu, sb.emuDone = cancel, make(chan struct{})
	go func() { defer close(sb.emuDone); _ = sb.emu.Serve(emuCtx, ln) }()
	sf.pipe.api.baseURL = sb.apiURL
	if sf.pipe.nats.url == "" {
		sf.pipe.nats.embeddedListen = freeIfTaken(sf.pipe.nats.embeddedListen)
	}
	if sb.conn, err = connectNATS(&sf.pipe.nats, true, log); err != nil {
		sb.close(log)
		return nil, err
	}
	m, reg := newMetrics()
	var runner atomic.Pointer[jobs.Runner]
	if sb.metrics, err = serveMetrics(freeIfTaken(sf.metricsAddr), reg, m, sb.conn, &runner, log); err != nil {
		sb.close(log)
		return nil, usagef("--metrics-addr: %v", err)
	}
	creds := credentialSet{token: "sandbox"}
	if sb.runner, _, err = startPipeline(ctx, &sf.pipe, sb.conn, creds, m, envMapSandbox, log); err != nil {
		sb.close(log)
		return nil, err
	}
	runner.Store(sb.runner)
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = sb.runner.Run(runCtx) }()
	sb.stopRun = func() { stopRun(); <-runDone }
	lim, closeLim, err := newLimiter(ctx, &sf.pipe.api, creds, sb.conn.js, budgetShared, 1, log)
	if err != nil {
		sb.close(log)
		return nil, err
	}
	sb.conn.onClose(closeLim)
	sb.lim = lim
	if sb.client, err = newAPIClient(&sf.pipe.api, creds, lim, noHooks, time.Minute); err != nil {
		sb.close(log)
		return nil, err
	}
	if sb.metrics.srv != nil {
		sb.metricsU = "http://" + sb.metrics.srv.Addr() + "/metrics"
	}
	fmt.Fprintf(stdout, "sandbox: %d tenants in dispatch namespace customers of account %s\n", sf.tenants, cfapitest.DefaultAccount)
	fmt.Fprintf(stdout, "  API emulator  %s  (budget %s, enforced)\n  NATS          %s  (data dir %s)\n  metrics       %s\n\n",
		sb.apiURL, sb.budget, sb.conn.url, sb.dataDir, orDash(sb.metricsU))
	return sb, nil
}

// envMapSandbox is the environment the sandbox's pipeline reads (none).
func envMapSandbox(string) string { return "" }

// demo runs a backfill over every tenant with a few live events in the
// middle, then prints what changed.
func (sb *sandbox) demo(ctx context.Context, sf *sandboxFlags, stdout, stderr io.Writer, log *zap.Logger) error {
	before, _ := sb.emu.Bindings(cfapitest.DefaultAccount, "customers", cfapitest.TenantName(1))
	patch := `{"upsert":[{"type":"r2_bucket","name":"ASSETS","bucket_name":"sandbox-assets"},{"type":"plain_text","name":"REGION","text":"eu"}],"remove":["METRICS"]}`
	pf, err := os.CreateTemp("", "sandbox-patch-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(pf.Name())
	if _, err := pf.WriteString(patch); err != nil {
		return err
	}
	pf.Close()
	bf := backfillFlags{pipe: sf.pipe, namespace: "customers", patchFile: pf.Name(), account: cfapitest.DefaultAccount,
		runID: fmt.Sprintf("sandbox-%d", time.Now().Unix()), output: "text", progress: "auto"}
	src, err := bf.source(nil, sb.client, nil, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo backfill %s: every tenant gets ASSETS (r2_bucket) and REGION, and loses METRICS if it has it:\n  %s\n", bf.runID, patch)
	live := make(chan []time.Duration, 1)
	go func() { live <- sb.liveEvents(ctx, sf.tenants, log) }()
	sum, err := bf.execute(ctx, sb.conn, progress.NewConsole(stderr, nil), src, sb.lim, log)
	if err != nil {
		return err
	}
	lat := <-live
	fmt.Fprintln(stdout)
	if err := printSummary(stdout, "text", sum); err != nil {
		var fe *failedError
		if !errors.As(err, &fe) {
			return err
		}
		fmt.Fprintln(stdout, "  (some scripts failed: see `reconciler dlq list`)")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Fprintf(stdout, "\nlive events during the backfill: %d, each applied within %s of its publish (max)\n", len(lat), maxDur(lat).Round(time.Millisecond))
	after, _ := sb.emu.Bindings(cfapitest.DefaultAccount, "customers", cfapitest.TenantName(1))
	fmt.Fprintf(stdout, "%s bindings before: %s\n%s bindings after:  %s\n", cfapitest.TenantName(1), names(before), cfapitest.TenantName(1), names(after))
	st := sb.emu.Stats()
	fmt.Fprintf(stdout, "API calls: %d reads, %d writes, %d answered 429 (budget %s)\n", st.Reads, st.Writes, st.Throttled, sb.budget)
	if sb.metricsU != "" {
		fmt.Fprintf(stdout, "metrics: %s\n", sb.metricsU)
	}
	return nil
}

// liveEvents publishes a few live events to random tenants once the
// backfill is under way and returns how long each took to be applied.
func (sb *sandbox) liveEvents(ctx context.Context, tenants int, log *zap.Logger) []time.Duration {
	// Wait until the backfill has started writing.
	for sb.emu.Stats().Writes < min(tenants/5, 50) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	var out []time.Duration
	for i := 0; i < 5; i++ {
		t := cfapitest.TenantName(rand.IntN(tenants) + 1)
		ev := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"live-%d-%d","account_id":%q,"dispatch_namespace":"customers","script":%q,"op":"patch","upsert":[{"type":"plain_text","name":"LIVE_%d","text":"now"}]}`,
			time.Now().UnixNano(), i, cfapitest.DefaultAccount, t, i)
		start := time.Now()
		if _, err := tools.Publish(ctx, sb.conn.js, "bindings", strings.NewReader(ev), tools.CheckEvent); err != nil {
			log.Warn("publishing a live event", zap.Error(err))
			continue
		}
		for {
			bs, _ := sb.emu.Bindings(cfapitest.DefaultAccount, "customers", t)
			if _, ok := cfapi.Bindings(bs).ByName(fmt.Sprintf("LIVE_%d", i)); ok {
				out = append(out, time.Since(start))
				break
			}
			if ctx.Err() != nil || time.Since(start) > time.Minute {
				return out
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return out
}

func (sb *sandbox) close(log *zap.Logger) {
	if sb.stopRun != nil {
		sb.stopRun()
	}
	if sb.metrics != nil {
		sb.metrics.shutdown()
	}
	if sb.conn != nil {
		sb.conn.close(log, 2*time.Second)
	}
	if sb.stopEmu != nil {
		sb.stopEmu()
		<-sb.emuDone
	}
	if sb.tempDir != "" {
		_ = os.RemoveAll(sb.tempDir)
	}
}

// listenOrFree listens on addr, or on a free port of its host when addr
// is taken.
func listenOrFree(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	host, _, serr := net.SplitHostPort(addr)
	if serr != nil {
		return nil, err
	}
	return net.Listen("tcp", net.JoinHostPort(host, "0"))
}

// freeIfTaken returns addr if it can be listened on now, else a free port
// on its host.
func freeIfTaken(addr string) string {
	if addr == "" {
		return addr
	}
	ln, err := listenOrFree(addr)
	if err != nil {
		return addr
	}
	defer ln.Close()
	return ln.Addr().String()
}

func names(bs []cfapi.Binding) string {
	out := cfapi.Bindings(bs).Names()
	sort.Strings(out)
	return strings.Join(out, " ")
}

func maxDur(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
