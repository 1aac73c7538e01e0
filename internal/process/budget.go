package process

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/budget"
	"github.com/reconciler/reconciler/internal/natsconn"
)

// Budget is how a process reaches the API and spends its budget.
type Budget struct {
	// BaseURL is the API's (--api-base-url).
	BaseURL string
	// RateLimit is --rate-limit as given, for messages; Budget requests
	// per Window is its value (auto's conservative start with Auto).
	RateLimit string
	Budget    int
	Window    time.Duration
	Auto      bool
	// MaxWrites is the API writes in flight at once.
	MaxWrites int
	// Reserve or ReserveFraction of the quota is left for others.
	Reserve         int
	ReserveFraction float64
	// Key is --budget-key ("" = the identity the API counts).
	Key string
	// Local allows a budget of this process alone against the real API.
	Local bool
	// UserAgent is sent with every request.
	UserAgent string
}

// Mode says how a process takes its share of the token's budget.
type Mode int

const (
	Local  Mode = iota // this process alone (no NATS)
	Shared             // the shared budget, which run set up
	Ensure             // the shared budget, set up if missing (run)
)

// Config returns the shared budget's settings. The key is Key, else the
// identity the API counts (looked up once with a request outside the
// shared budget), else the credentials; the log says which.
func (b Budget) Config(ctx context.Context, creds cfapi.Credentials, replicas int, log *zap.Logger) budget.Config {
	cfg := budget.Config{Credential: creds.BudgetKey(b.BaseURL), Budget: b.Budget, Window: b.Window, Replicas: replicas, Logger: log,
		Auto: b.Auto, Reserve: b.Reserve, ReserveFraction: b.ReserveFraction}
	budget.Identify(ctx, &cfg, b.Key, func(ctx context.Context) (string, error) {
		return budget.LookupIdentity(ctx, creds.Apply(cfapi.Config{BaseURL: b.BaseURL, UserAgent: b.UserAgent}))
	}, log)
	return cfg
}

// Limiter returns the limiter of a process: the budget of the API token
// shared through js by every process that uses it (the rate limit is the
// token's whole budget, whatever the number of processes), or with Local
// (no NATS reachable) a budget of this process alone. The returned close
// releases the shared source.
func (b Budget) Limiter(ctx context.Context, creds cfapi.Credentials, js jetstream.JetStream, mode Mode, replicas int, log *zap.Logger) (*ratelimit.Limiter, func(), error) {
	hooks := ratelimit.WithLimiterHooks(ratelimit.LimiterHooks{PauseCapped: func(requested, applied time.Duration) {
		log.Warn("the API asked for an absurd Retry-After; pausing for the budget's window instead",
			zap.Duration("retry_after", requested), zap.Duration("pause", applied))
	}})
	if mode == Local {
		lim, err := ratelimit.NewLimiter(b.Budget, b.Window, b.MaxWrites, hooks)
		if err != nil {
			return nil, nil, clihelp.Usagef("--rate-limit: %v", err)
		}
		return lim, func() {}, nil
	}
	return budget.NewLimiter(ctx, js, b.Config(ctx, creds, replicas, log), mode == Ensure, b.MaxWrites, hooks)
}

// Client returns the API client over lim.
func (b Budget) Client(creds cfapi.Credentials, lim *ratelimit.Limiter, hooks cfapi.Hooks, timeout time.Duration) (*cfapi.Client, error) {
	client, err := cfapi.New(creds.Apply(cfapi.Config{
		BaseURL: b.BaseURL, Limiter: lim, Hooks: hooks, UserAgent: b.UserAgent,
		HTTPClient: &http.Client{Timeout: timeout},
	}))
	if err != nil {
		return nil, clihelp.Usagef("--api-base-url: %v", err)
	}
	return client, nil
}

// LocalAllowed says whether a tool without a running pipeline's budget
// may spend a budget of its own: always against an emulator or another
// base URL, and against the real API only with Local.
func (b Budget) LocalAllowed() error {
	if b.Local || strings.TrimRight(b.BaseURL, "/") != cfapi.DefaultBaseURL {
		return nil
	}
	return clihelp.Usagef("no running reconciler's shared budget is reachable (--nats-url): refusing to spend a private budget with a production token, "+
		"which other tools and replicas would not see; start `reconciler run`, pass --nats-url, or pass --local-budget to use %s alone", b.RateText())
}

// RateText is the rate limit for messages.
func (b Budget) RateText() string {
	if b.Auto {
		return fmt.Sprintf("%d/%s (auto's conservative start)", b.Budget, b.Window)
	}
	return b.RateLimit
}

// ToolClient returns the API client of a tool (plan, backfill): on the
// shared budget when connect reaches a pipeline, whose connection it
// returns too; else (unless urlGiven: the pipeline must be there) on a
// budget of this process alone. close releases both.
func (b Budget) ToolClient(ctx context.Context, creds cfapi.Credentials, connect func() (*natsconn.Conn, error), urlGiven bool, log *zap.Logger) (*cfapi.Client, *natsconn.Conn, func(), error) {
	conn, err := connect()
	if err != nil && urlGiven {
		return nil, nil, nil, err
	}
	mode := Shared
	if err != nil {
		if lerr := b.LocalAllowed(); lerr != nil {
			return nil, nil, nil, lerr
		}
		conn, mode = nil, Local
		log.Info("no running reconciler reachable: this process uses the API budget alone", zap.String("rate_limit", b.RateText()))
	}
	var js jetstream.JetStream
	if conn != nil {
		js = conn.JS
	}
	lim, closeLim, err := b.Limiter(ctx, creds, js, mode, 1, log)
	if err != nil {
		if conn != nil {
			conn.Close(log, time.Second)
		}
		return nil, nil, nil, err
	}
	closeAll := func() {
		closeLim()
		if conn != nil {
			conn.Close(log, 5*time.Second)
		}
	}
	client, err := b.Client(creds, lim, cfapi.Hooks{}, time.Minute)
	if err != nil {
		closeAll()
		return nil, nil, nil, err
	}
	return client, conn, closeAll, nil
}
