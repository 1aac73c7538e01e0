package process

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/health"
	"github.com/reconciler/reconciler/internal/jobs"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/natsconn"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/metrics"
)

// DefaultMemoryLimit is the Go heap's soft limit when GOMEMLIMIT is not
// set: the garbage collector works harder near it instead of letting the
// heap grow to twice what is live, so that a storm's held events (bounded
// by MaxAckPending) keep the process within its container's memory.
const DefaultMemoryLimit = 128 << 20

// SoftMemoryLimit applies DefaultMemoryLimit unless GOMEMLIMIT (which the
// Go runtime reads itself) is set in getenv.
func SoftMemoryLimit(getenv func(string) string, log *zap.Logger) {
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(DefaultMemoryLimit)
	log.Debug("soft memory limit", zap.Int64("bytes", DefaultMemoryLimit))
}

// Pipeline is what StartPipeline needs besides the connection.
type Pipeline struct {
	Config jobs.Config
	API    Budget
	Creds  cfapi.Credentials
	// FingerprintKey returns the HMAC key of value fingerprints, making
	// it when missing; a clihelp.UsageError from it is not retried.
	FingerprintKey func(ctx context.Context) ([]byte, error)
}

// StartPipeline sets up JetStream on conn (retrying until it succeeds or
// ctx ends), the planner and the API client on the shared budget (set up
// if missing, released when conn closes), and returns the runner and its
// limiter.
func StartPipeline(ctx context.Context, p Pipeline, conn *natsconn.Conn, m *metrics.Metrics, log *zap.Logger) (*jobs.Runner, *ratelimit.Limiter, error) {
	res, err := state.EnsureStreams(ctx, conn.JS, p.Config.SetupConfig, log)
	if err != nil {
		return nil, nil, fmt.Errorf("setting up JetStream: %w", err)
	}
	// The config and budget buckets are set up like the others: retried,
	// so that a cluster still electing leaders or another process creating
	// them at the same moment never stops this one.
	var fpKey []byte
	err = state.RetrySetup(ctx, log, "bucket "+state.ConfigBucket, func(ctx context.Context) error {
		var err error
		fpKey, err = p.FingerprintKey(ctx)
		var usage *clihelp.UsageError
		if errors.As(err, &usage) {
			return backoff.Permanent(err)
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	pl, err := planner.New(planner.Options{FingerprintKey: fpKey})
	if err != nil {
		return nil, nil, err
	}
	lim, closeBudget, err := p.API.Limiter(ctx, p.Creds, conn.JS, Ensure, p.Config.Replicas, log)
	if err != nil {
		return nil, nil, err
	}
	conn.OnClose(closeBudget)
	client, err := p.API.Client(p.Creds, lim, m.APIHooks(), 2*time.Minute)
	if err != nil {
		return nil, nil, err
	}
	return jobs.NewRunner(p.Config, res, client, pl, m, log), lim, nil
}

// NewMetrics returns the collectors on a new registry, with the Go and
// process collectors and the build info.
func NewMetrics(version, commit string) (*metrics.Metrics, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, event.ReasonLabels()...)
	m.SetBuildInfo(version, commit)
	return m, reg
}

// MetricsServer is the /metrics, /healthz and /readyz server, or nothing
// when its address is empty.
type MetricsServer struct{ srv *metrics.Server }

// LivenessBound is longer than a budget pause for Retry-After, so a
// process waiting out a 429 is not restarted.
const LivenessBound = 10 * time.Minute

// ServeMetrics serves the endpoints on addr ("" = none). /readyz is ready
// once runner holds a runner, conn is connected and the runner is ready;
// /healthz fails when work is pending and no reconcile finished for
// LivenessBound: a wedged process, which a restart cures.
func ServeMetrics(addr string, reg *prometheus.Registry, m *metrics.Metrics, conn *natsconn.Conn, runner *atomic.Pointer[jobs.Runner], log *zap.Logger) (*MetricsServer, error) {
	if addr == "" {
		return &MetricsServer{}, nil
	}
	srv, err := metrics.Listen(addr, health.Handler(reg, LivenessBound, []string{"reconciler_queue_depth", "reconciler_inflight_reconciles"},
		[]string{"reconciler_reconcile_total"}, m.Handler(reg, func() error {
			if !conn.NC.IsConnected() {
				return errors.New("NATS is not connected")
			}
			r := runner.Load()
			if r == nil {
				return errors.New("starting: setting up JetStream")
			}
			return r.Ready()
		})))
	if err != nil {
		return nil, err
	}
	log.Info("metrics listening", zap.String("addr", srv.Addr()))
	return &MetricsServer{srv: srv}, nil
}

// Addr is where the server listens, "" when it is off.
func (s *MetricsServer) Addr() string {
	if s.srv == nil {
		return ""
	}
	return s.srv.Addr()
}

// Shutdown stops the server within two seconds.
func (s *MetricsServer) Shutdown() {
	if s.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}
