package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/natsconn"
	"github.com/reconciler/reconciler/internal/process"
	"github.com/reconciler/reconciler/internal/progress"
	"github.com/reconciler/reconciler/internal/sandbox"
)

// sandboxFlags are the flags of `reconciler sandbox`.
type sandboxFlags struct {
	pipe         runFlags
	tenants      int
	keep         bool
	metricsAddr  string
	emulatorAddr string
}

func (sf *sandboxFlags) register(f *clihelp.Flags) {
	sf.pipe.registerPipeline(f)
	f.Int(&sf.tenants, "tenants", "", 1000, "tenant scripts the emulator is seeded with")
	f.Alias("seed-tenants", "tenants")
	f.BoolVar(&sf.keep, "keep", false, "stay up after the summary, until Ctrl-C, to publish events or deploy with wrangler")
	f.Str(&sf.metricsAddr, "metrics-addr", "RECONCILER_METRICS_ADDR", "127.0.0.1:9464", "address of /metrics, /healthz and /readyz (a free port if taken)")
	f.Str(&sf.emulatorAddr, "emulator-addr", "", "127.0.0.1:8787", "address of the API emulator (a free port if taken)")
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
	f := clihelp.CommandFlags(cmd, sandbox.Env(a.env))
	sf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runSandbox(ctx, a, f, &sf) })
	return cmd
}

func runSandbox(ctx context.Context, a *app, f *clihelp.Flags, sf *sandboxFlags) error {
	stdout, stderr := a.stdout, a.stderr
	if err := f.NoArgs(""); err != nil {
		return err
	}
	if err := sf.pipe.validate(f); err != nil {
		return err
	}
	if sf.tenants < 1 || sf.tenants > 100000 {
		return clihelp.Usagef("--tenants: must be between 1 and 100000, got %d", sf.tenants)
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
	sandbox.Try(stdout, sb.emu.URL, sb.conn.URL)
	<-ctx.Done()
	return nil
}

// sandboxRun is the running sandbox.
type sandboxRun struct {
	emu      *sandbox.Emulator
	conn     *natsconn.Conn
	metrics  *process.MetricsServer
	runner   *jobs.Runner
	stopRun  func()
	tempDir  string
	client   *cfapi.Client
	lim      *ratelimit.Limiter // the client's, on the shared budget
	dataDir  string
	budget   string
	metricsU string
}

// start brings everything up on the requested ports, or free ones.
func (sf *sandboxFlags) start(ctx context.Context, stdout io.Writer, log *zap.Logger) (*sandboxRun, error) {
	sb := &sandboxRun{budget: sf.pipe.api.rateLimit}
	if sf.pipe.nats.dataDir == "./reconciler-data" || sf.pipe.nats.dataDir == "" {
		dir, err := os.MkdirTemp("", "reconciler-sandbox-")
		if err != nil {
			return nil, err
		}
		sb.tempDir, sf.pipe.nats.dataDir = dir, dir
	}
	sb.dataDir = sf.pipe.nats.dataDir
	// The emulator enforces the same budget, as the real API would.
	var err error
	if sb.emu, err = sandbox.StartEmulator(ctx, sf.emulatorAddr, sf.tenants, sf.pipe.api.budget, sf.pipe.api.window); err != nil {
		return nil, clihelp.Usagef("--emulator-addr: %v", err)
	}
	sf.pipe.api.baseURL = sb.emu.URL
	if sf.pipe.nats.url == "" {
		sf.pipe.nats.embeddedListen = sandbox.FreeIfTaken(sf.pipe.nats.embeddedListen)
	}
	if sb.conn, err = connectNATS(&sf.pipe.nats, true, log); err != nil {
		sb.close(log)
		return nil, err
	}
	m, reg := newMetrics()
	var runner atomic.Pointer[jobs.Runner]
	if sb.metrics, err = process.ServeMetrics(sandbox.FreeIfTaken(sf.metricsAddr), reg, m, sb.conn, &runner, log); err != nil {
		sb.close(log)
		return nil, clihelp.Usagef("--metrics-addr: %v", err)
	}
	creds := cfapi.Credentials{Token: "sandbox"}
	if sb.runner, _, err = startPipeline(ctx, &sf.pipe, sb.conn, creds, m, envMapSandbox, log); err != nil {
		sb.close(log)
		return nil, err
	}
	runner.Store(sb.runner)
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = sb.runner.Run(runCtx) }()
	sb.stopRun = func() { stopRun(); <-runDone }
	lim, closeLim, err := sf.pipe.api.spec().Limiter(ctx, creds, sb.conn.JS, process.Shared, 1, log)
	if err != nil {
		sb.close(log)
		return nil, err
	}
	sb.conn.OnClose(closeLim)
	sb.lim = lim
	if sb.client, err = sf.pipe.api.spec().Client(creds, lim, cfapi.Hooks{}, time.Minute); err != nil {
		sb.close(log)
		return nil, err
	}
	if addr := sb.metrics.Addr(); addr != "" {
		sb.metricsU = "http://" + addr + "/metrics"
	}
	fmt.Fprintf(stdout, "sandbox: %d tenants in dispatch namespace customers of account %s\n", sf.tenants, cfapitest.DefaultAccount)
	fmt.Fprintf(stdout, "  API emulator  %s  (budget %s, enforced)\n  NATS          %s  (data dir %s)\n  metrics       %s\n\n",
		sb.emu.URL, sb.budget, sb.conn.URL, sb.dataDir, tools.OrDash(sb.metricsU))
	return sb, nil
}

// envMapSandbox is the environment the sandbox's pipeline reads (none).
func envMapSandbox(string) string { return "" }

// demo runs a backfill over every tenant with a few live events in the
// middle, then prints what changed.
func (sb *sandboxRun) demo(ctx context.Context, sf *sandboxFlags, stdout, stderr io.Writer, log *zap.Logger) error {
	before, _ := sb.emu.Bindings(cfapitest.DefaultAccount, sandbox.Namespace, cfapitest.TenantName(1))
	pf, err := os.CreateTemp("", "sandbox-patch-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(pf.Name())
	if _, err := pf.WriteString(sandbox.DemoPatch); err != nil {
		return err
	}
	pf.Close()
	bf := backfillFlags{pipe: sf.pipe, namespace: sandbox.Namespace, patchFile: pf.Name(), account: cfapitest.DefaultAccount,
		runID: fmt.Sprintf("sandbox-%d", time.Now().Unix()), output: "text", progress: "auto"}
	src, err := bf.source(nil, sb.client, nil, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo backfill %s: every tenant gets ASSETS (r2_bucket) and REGION, and loses METRICS if it has it:\n  %s\n", bf.runID, sandbox.DemoPatch)
	live := make(chan []time.Duration, 1)
	go func() { live <- sandbox.LiveEvents(ctx, sb.emu.Server, sb.conn.JS, sf.tenants, log) }()
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
	sandbox.Report(stdout, sb.emu.Server, before, lat, sb.budget, sb.metricsU)
	return nil
}

func (sb *sandboxRun) close(log *zap.Logger) {
	if sb.stopRun != nil {
		sb.stopRun()
	}
	if sb.metrics != nil {
		sb.metrics.Shutdown()
	}
	if sb.conn != nil {
		sb.conn.Close(log, 2*time.Second)
	}
	if sb.emu != nil {
		sb.emu.Close()
	}
	if sb.tempDir != "" {
		_ = os.RemoveAll(sb.tempDir)
	}
}
