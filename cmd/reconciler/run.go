package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// runFlags are the flags of `reconciler run`.
type runFlags struct {
	common
	replicas        int
	shutdownTimeout time.Duration
	resyncInterval  time.Duration
	ackWait         time.Duration
	maxDeliver      int
	coalesceDelay   time.Duration
	consumer        string
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer, e env) error {
	var rf runFlags
	f := newFlagSet("run", e, stderr)
	rf.register(f)
	f.integer(&rf.replicas, "replicas", "RECONCILER_REPLICAS", 1, "replicas of streams, consumer and buckets (3 on a clustered NATS)")
	f.duration(&rf.shutdownTimeout, "shutdown-timeout", "RECONCILER_SHUTDOWN_TIMEOUT", 30*time.Second, "how long a graceful shutdown may take")
	f.duration(&rf.resyncInterval, "resync-interval", "RECONCILER_RESYNC_INTERVAL", 0, "reconcile every known script this often to repair drift (0 = off)")
	f.duration(&rf.ackWait, "ack-wait", "RECONCILER_ACK_WAIT", 2*time.Minute, "consumer AckWait (above the p99 reconcile time)")
	f.integer(&rf.maxDeliver, "max-deliver", "RECONCILER_MAX_DELIVER", 8, "deliveries of one event before it is dead-lettered")
	f.duration(&rf.coalesceDelay, "coalesce-delay", "RECONCILER_COALESCE_DELAY", 100*time.Millisecond, "wait after a script's first event so a burst costs one reconcile")
	f.str(&rf.consumer, "consumer", "RECONCILER_CONSUMER", "reconciler", "durable consumer name (shared by replicas)")
	if err := f.parse(args); err != nil {
		return err
	}
	if len(f.pos) > 0 {
		return usagef("run takes no arguments, got %q", f.pos)
	}
	if err := rf.validate(f); err != nil {
		return err
	}
	switch {
	case rf.replicas < 1 || rf.replicas > 5:
		return usagef("%s: must be between 1 and 5, got %d", f.name("replicas"), rf.replicas)
	case rf.shutdownTimeout <= 0:
		return usagef("%s: must be positive", f.name("shutdown-timeout"))
	case rf.resyncInterval < 0:
		return usagef("%s: must not be negative", f.name("resync-interval"))
	case rf.ackWait < time.Second:
		return usagef("%s: must be at least 1s, got %s", f.name("ack-wait"), rf.ackWait)
	case rf.maxDeliver < 1:
		return usagef("%s: must be at least 1, got %d", f.name("max-deliver"), rf.maxDeliver)
	case rf.coalesceDelay < 0:
		return usagef("%s: must not be negative", f.name("coalesce-delay"))
	}
	token, email, key, err := credentials(e, rf.apiBaseURL)
	if err != nil {
		return err
	}
	log := rf.logger(stderr)
	defer func() { _ = log.Sync() }()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	conn, err := connectNATS(&rf.common, true, log)
	if err != nil {
		return err
	}
	// The shutdown budget starts when the signal arrives; whatever the
	// runner leaves of it goes to draining NATS and stopping the server.
	var shutdownAt atomic.Pointer[time.Time]
	defer func() {
		left := 10 * time.Second
		if at := shutdownAt.Load(); at != nil {
			left = max(time.Until(at.Add(rf.shutdownTimeout)), 500*time.Millisecond)
		}
		conn.close(log, left)
	}()

	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	cfg := jobs.Config{
		SetupConfig: jobs.SetupConfig{
			Names:      jobs.Names{SubjectPrefix: rf.subjectPrefix, Consumer: rf.consumer},
			Replicas:   rf.replicas,
			AckWait:    rf.ackWait,
			MaxDeliver: rf.maxDeliver,
		},
		Concurrency:    rf.concurrency,
		ResyncInterval: rf.resyncInterval,
		CoalesceDelay:  rf.coalesceDelay,
	}
	if rf.coalesceDelay == 0 {
		cfg.CoalesceDelay = -1 // explicitly off
	}
	res, err := jobs.EnsureStreams(setupCtx, conn.js, cfg.SetupConfig)
	if err != nil {
		return fmt.Errorf("setting up JetStream: %w", err)
	}
	fpKey, err := fingerprintKey(setupCtx, conn.js, e, rf.replicas)
	if err != nil {
		return err
	}
	pl, err := planner.New(planner.Options{FingerprintKey: fpKey})
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	limiter, err := cfapi.NewLimiter(rf.budget, rf.window, rf.maxWrites)
	if err != nil {
		return usagef("%s: %v", f.name("rate-limit"), err)
	}
	client, err := cfapi.New(cfapi.Config{
		BaseURL: rf.apiBaseURL, Token: token, Email: email, APIKey: key,
		Limiter: limiter, Hooks: m.APIHooks(), UserAgent: "reconciler/" + version,
		HTTPClient: &http.Client{Timeout: 2 * time.Minute},
	})
	if err != nil {
		return usagef("%s: %v", f.name("api-base-url"), err)
	}

	var ready atomic.Bool
	var msrv *metrics.Server
	if rf.metricsAddr != "" {
		msrv, err = metrics.Listen(rf.metricsAddr, metrics.Handler(reg, func() error {
			if !conn.nc.IsConnected() {
				return errors.New("NATS is not connected")
			}
			if !ready.Load() {
				return errors.New("starting")
			}
			return nil
		}))
		if err != nil {
			return usagef("%s: %v", f.name("metrics-addr"), err)
		}
		log.Info("metrics listening", zap.String("addr", msrv.Addr()))
	}

	runner := jobs.NewRunner(cfg, res, client, pl, m, log)
	log.Info("reconciler running",
		zap.String("nats", redactURL(conn.url)), zap.String("api", rf.apiBaseURL),
		zap.String("rate_limit", rf.rateLimit), zap.Int("concurrency", rf.concurrency),
		zap.String("subjects", rf.subjectPrefix+".<account>.<namespace>.<script>"), zap.String("version", version))
	ready.Store(true)
	drainCtx, cancelDrain := context.WithCancel(context.Background())
	defer cancelDrain()
	err = runner.Run(ctx, func() context.Context {
		now := time.Now()
		shutdownAt.Store(&now)
		// Keep a fifth of the budget for draining NATS afterwards.
		time.AfterFunc(rf.shutdownTimeout*4/5, cancelDrain)
		return drainCtx
	})
	ready.Store(false)
	if msrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = msrv.Shutdown(sctx)
		cancel()
	}
	log.Info("reconciler stopped")
	return err
}
