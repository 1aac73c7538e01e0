package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs"
	"github.com/reconciler/reconciler/internal/jobs/budget"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/natsconn"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/internal/process"
	"github.com/reconciler/reconciler/metrics"
)

// runFlags are the flags of `reconciler run`.
type runFlags struct {
	nats            natsFlags
	api             apiFlags
	log             logFlags
	concurrency     int
	metricsAddr     string
	streamReplicas  int
	oldReplicas     int
	shutdownTimeout time.Duration
	resyncInterval  time.Duration
	ackWait         time.Duration
	maxDeliver      int
	coalesceDelay   time.Duration
	coalesceMaxWait time.Duration
	leaseTTL        time.Duration
	consumer        string
	defaultStrategy string
}

// registerPipeline registers the flags of a process that runs the pipeline
// (run, and backfill when it runs it itself).
func (rf *runFlags) registerPipeline(f *clihelp.Flags) {
	rf.nats.register(f)
	rf.api.register(f)
	rf.log.register(f)
	f.Int(&rf.concurrency, "concurrency", "RECONCILER_CONCURRENCY", 16, "scripts reconciled in parallel")
	f.Int(&rf.streamReplicas, "stream-replicas", "RECONCILER_STREAM_REPLICAS", 1, "replicas of every JetStream stream, consumer and bucket (3 on a clustered NATS); not the number of reconciler processes")
	f.Int(&rf.oldReplicas, "replicas", "RECONCILER_REPLICAS", 0, "deprecated spelling of --stream-replicas")
	f.Duration(&rf.ackWait, "ack-wait", "RECONCILER_ACK_WAIT", 20*time.Second, "consumer AckWait: how long the events of a process that died wait before they are delivered again")
	f.Int(&rf.maxDeliver, "max-deliver", "RECONCILER_MAX_DELIVER", 8, "deliveries of one event before it is dead-lettered")
	f.Duration(&rf.coalesceDelay, "coalesce-delay", "RECONCILER_COALESCE_DELAY", 100*time.Millisecond, "a script is reconciled this long after its last event, so a burst costs one reconcile")
	f.Duration(&rf.coalesceMaxWait, "coalesce-max-wait", "RECONCILER_COALESCE_MAX_WAIT", 5*time.Second, "but no later than this after its first event")
	f.Duration(&rf.leaseTTL, "lease-ttl", "RECONCILER_LEASE_TTL", 10*time.Second, "how long a script's write lease outlives its holder's last renewal (longer rides out NATS hiccups; shorter frees a crashed replica's scripts sooner)")
	f.Str(&rf.consumer, "consumer", "RECONCILER_CONSUMER", "reconciler", "durable consumer name (shared by replicas)")
	f.Str(&rf.defaultStrategy, "default-strategy", "RECONCILER_DEFAULT_STRATEGY", "auto", "how a change is written when its event asks for auto or names no strategy: auto, settings, script or version")
}

func (rf *runFlags) register(f *clihelp.Flags) {
	rf.registerPipeline(f)
	f.Str(&rf.metricsAddr, "metrics-addr", "RECONCILER_METRICS_ADDR", ":9464", "address of /metrics, /healthz and /readyz (empty = off)")
	f.Duration(&rf.shutdownTimeout, "shutdown-timeout", "RECONCILER_SHUTDOWN_TIMEOUT", 30*time.Second, "how long a graceful shutdown may take")
	f.Duration(&rf.resyncInterval, "resync-interval", "RECONCILER_RESYNC_INTERVAL", 0, "reconcile every known script this often to repair drift (0 = off)")
}

func (rf *runFlags) validate(f *clihelp.Flags) error {
	if err := clihelp.ValidateAll(f, rf.nats.validate, rf.api.validate, rf.log.validate); err != nil {
		return err
	}
	if rf.oldReplicas != 0 {
		if f.IsSet("stream-replicas") {
			return clihelp.Usagef("--replicas is the deprecated spelling of --stream-replicas; give only one of them")
		}
		rf.streamReplicas = rf.oldReplicas
	}
	switch {
	case rf.concurrency < 1 || rf.concurrency > 1024:
		return clihelp.Usagef("%s: must be between 1 and 1024, got %d", f.Label("concurrency"), rf.concurrency)
	case rf.streamReplicas < 1 || rf.streamReplicas > 5:
		return clihelp.Usagef("%s: must be between 1 and 5, got %d", f.Label("stream-replicas"), rf.streamReplicas)
	case rf.shutdownTimeout <= 0 && f.Lookup("shutdown-timeout") != nil:
		return clihelp.Usagef("%s: must be positive", f.Label("shutdown-timeout"))
	case rf.resyncInterval < 0:
		return clihelp.Usagef("%s: must not be negative", f.Label("resync-interval"))
	case rf.ackWait < time.Second:
		return clihelp.Usagef("%s: must be at least 1s, got %s", f.Label("ack-wait"), rf.ackWait)
	case rf.maxDeliver < 1:
		return clihelp.Usagef("%s: must be at least 1, got %d", f.Label("max-deliver"), rf.maxDeliver)
	case rf.coalesceDelay < 0:
		return clihelp.Usagef("%s: must not be negative", f.Label("coalesce-delay"))
	case rf.leaseTTL < time.Second:
		return clihelp.Usagef("%s: must be at least 1s, got %s", f.Label("lease-ttl"), rf.leaseTTL)
	case rf.coalesceMaxWait < rf.coalesceDelay:
		return clihelp.Usagef("%s: must be at least --coalesce-delay", f.Label("coalesce-max-wait"))
	}
	if _, err := planner.ParseStrategy(rf.defaultStrategy); err != nil {
		return clihelp.Usagef("%s: %v", f.Label("default-strategy"), err)
	}
	return nil
}

// jobsConfig returns the pipeline's configuration.
func (rf *runFlags) jobsConfig() jobs.Config {
	cfg := jobs.Config{
		SetupConfig: state.SetupConfig{
			Names:      state.Names{SubjectPrefix: rf.nats.subjectPrefix, Consumer: rf.consumer},
			Replicas:   rf.streamReplicas,
			AckWait:    rf.ackWait,
			MaxDeliver: rf.maxDeliver,
			LeaseTTL:   rf.leaseTTL,
		},
		Concurrency:     rf.concurrency,
		ResyncInterval:  rf.resyncInterval,
		CoalesceDelay:   rf.coalesceDelay,
		CoalesceMaxWait: rf.coalesceMaxWait,
		// The runner gets four fifths of the shutdown budget; the rest is
		// for draining NATS and stopping the embedded server.
		ShutdownTimeout: rf.shutdownTimeout * 4 / 5,
		RecoverOnStart:  true,
		DefaultStrategy: planner.Strategy(rf.defaultStrategy),
	}
	if rf.coalesceDelay == 0 {
		cfg.CoalesceDelay = -1 // explicitly off
	}
	return cfg
}

func newRunCmd(a *app) *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "run [flags]",
		Short: "consume events and reconcile until SIGINT/SIGTERM, then shut down gracefully",
		Long: `Consumes binding-change events from NATS JetStream and reconciles each
script: reads its live bindings, plans the difference, writes only that, under
the rate budget shared by every process using the token. It creates the
streams, consumer and buckets it needs. Without --nats-url it runs an embedded
JetStream server in --data-dir. SIGTERM or Ctrl-C shuts it down gracefully
within --shutdown-timeout; unfinished events are redelivered to the next run.`,
		Example: `  reconciler run                                   # embedded NATS in ./reconciler-data
  reconciler run --nats-url nats://nats:4222 --stream-replicas 3
  RECONCILER_RATE_LIMIT=auto reconciler run --log-format json`,
	}
	f := clihelp.CommandFlags(cmd, a.env)
	rf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runRun(ctx, a, f, &rf) })
	return cmd
}

func runRun(ctx context.Context, a *app, f *clihelp.Flags, rf *runFlags) error {
	stderr, e := a.stderr, a.env
	if err := f.NoArgs(""); err != nil {
		return err
	}
	if err := rf.validate(f); err != nil {
		return err
	}
	creds, err := credentials(e, rf.api.baseURL)
	if err != nil {
		return err
	}
	log := rf.log.logger(stderr)
	defer func() { _ = log.Sync() }()
	process.SoftMemoryLimit(e, log)
	if rf.oldReplicas != 0 {
		log.Warn("--replicas (RECONCILER_REPLICAS) is deprecated: it is the number of JetStream stream replicas, not of reconciler processes; use --stream-replicas")
	}

	conn, err := connectNATS(&rf.nats, true, log)
	if err != nil {
		return err
	}
	defer func() { conn.Close(log, max(rf.shutdownTimeout/5, 500*time.Millisecond)) }()
	m, reg := newMetrics()
	m.SetRateBudget(rf.api.budget, rf.api.window)
	var runner atomic.Pointer[jobs.Runner]
	msrv, err := process.ServeMetrics(rf.metricsAddr, reg, m, conn, &runner, log)
	if err != nil {
		return clihelp.Usagef("%s: %v", f.Label("metrics-addr"), err)
	}
	defer msrv.Shutdown()

	p, lim, err := startPipeline(ctx, rf, conn, creds, m, e, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while setting up
		}
		return err
	}
	runner.Store(p)
	go budget.SampleGauges(ctx, m, conn.NC.IsConnected, lim)
	log.Info("reconciler running",
		zap.String("nats", redactURL(conn.URL)), zap.String("api", rf.api.baseURL),
		zap.String("rate_limit", rf.api.rateLimit), zap.Int("concurrency", rf.concurrency),
		zap.String("subjects", rf.nats.subjectPrefix+".<account>.<namespace>.<script>"), zap.String("version", buildVersion()))
	err = p.Run(ctx)
	runner.Store(nil)
	log.Info("reconciler stopped")
	return err
}

// startPipeline starts the pipeline of rf on conn
// (process.StartPipeline); e may set its fingerprint key.
func startPipeline(ctx context.Context, rf *runFlags, conn *natsconn.Conn, creds cfapi.Credentials, m *metrics.Metrics, e clihelp.Env, log *zap.Logger) (*jobs.Runner, *ratelimit.Limiter, error) {
	return process.StartPipeline(ctx, process.Pipeline{Config: rf.jobsConfig(), API: rf.api.spec(), Creds: creds,
		FingerprintKey: func(ctx context.Context) ([]byte, error) {
			return fingerprintKey(ctx, conn.JS, e, rf.streamReplicas, true)
		}}, conn, m, log)
}

// toolClient returns the API client of a tool (process.Budget.ToolClient)
// on the shared budget of the pipeline behind n when one is reachable.
func toolClient(ctx context.Context, n *natsFlags, a *apiFlags, creds cfapi.Credentials, log *zap.Logger) (*cfapi.Client, *natsconn.Conn, func(), error) {
	return a.spec().ToolClient(ctx, creds, func() (*natsconn.Conn, error) { return connectNATS(n, false, log) }, n.url != "", log)
}

// newMetrics returns the collectors on a new registry (process.NewMetrics).
func newMetrics() (*metrics.Metrics, *prometheus.Registry) {
	return process.NewMetrics(buildVersion(), buildCommit())
}
