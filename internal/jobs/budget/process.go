package budget

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	jobstate "github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/metrics"
)

// ParseReserve parses a reserve: N requests, or P% of the quota (P from
// 0 to below 100). It returns the requests, or the fraction of the
// quota; a reserve of zero is none (fraction -1, as Config wants).
func ParseReserve(s string) (requests int, fraction float64, ok bool) {
	s = strings.TrimSpace(s)
	if p, isPct := strings.CutSuffix(s, "%"); isPct {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v >= 100 {
			return 0, 0, false
		}
		if v == 0 {
			return 0, -1, true
		}
		return 0, v / 100, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, 0, false
	}
	if n == 0 {
		return 0, -1, true
	}
	return n, 0, true
}

// identityLookupBudget is the budget of the identity lookup per 5
// minutes: the smallest whose burst (ratelimit.BurstFor) is two requests.
const identityLookupBudget = 100

// LookupIdentity asks the API at cfg (its base URL, credentials and
// user agent) for the identity it counts the budget by, on a tiny budget
// of its own: a burst of two requests (GET /user, then
// /user/tokens/verify when the token may not read the user) at once, and
// a retry a few seconds later.
func LookupIdentity(ctx context.Context, cfg cfapi.Config) (string, error) {
	lim, err := ratelimit.NewLimiter(identityLookupBudget, 5*time.Minute, 1)
	if err != nil {
		return "", err
	}
	cfg.Limiter, cfg.HTTPClient, cfg.Retry = lim, &http.Client{Timeout: 10 * time.Second}, cfapi.RetryPolicy{MaxAttempts: 2}
	c, err := cfapi.New(cfg)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return c.BudgetIdentity(ctx)
}

// Identify sets cfg.Identity: "key:" and key when key is given, else
// what lookup finds (the identity the API counts); when lookup fails the
// budget stays keyed by the credential. The log says which.
func Identify(ctx context.Context, cfg *Config, key string, lookup func(context.Context) (string, error), log *zap.Logger) {
	if key != "" {
		cfg.Identity = "key:" + key
		log.Info("rate budget keyed by --budget-key", zap.String("key", KeyForIdentity(cfg.Identity)))
		return
	}
	id, err := lookup(ctx)
	if err != nil {
		log.Warn("cannot find the API user the rate limit counts; the budget is keyed by the credentials (two tokens of one user then get two budgets; set --budget-key)",
			zap.Error(err), zap.String("key", KeyFor(cfg.Credential)))
		return
	}
	cfg.Identity = id
	log.Info("rate budget keyed by the API user", zap.String("identity_kind", strings.SplitN(id, ":", 2)[0]),
		zap.String("key", KeyForIdentity(id)))
}

// NewLimiter returns a process's limiter on the shared budget of cfg
// behind js, with maxWrites writes in flight: with ensure (run) the
// bucket is set up when missing, retried like every setup; otherwise
// (tools) it must exist. The returned close releases the source.
func NewLimiter(ctx context.Context, js jetstream.JetStream, cfg Config, ensure bool, maxWrites int, opts ...ratelimit.LimiterOption) (*ratelimit.Limiter, func(), error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	var src *Source
	var err error
	if ensure {
		err = jobstate.RetrySetup(ctx, cfg.Logger, "bucket "+DefaultBucket, func(ctx context.Context) error {
			src, err = Ensure(ctx, js, cfg)
			return err
		})
	} else {
		src, err = Open(ctx, js, cfg)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, nil, fmt.Errorf("shared budget: %w: start `reconciler run` on this NATS first", err)
		}
		return nil, nil, fmt.Errorf("shared budget: %w", err)
	}
	lim, err := ratelimit.NewSharedLimiter(src, maxWrites, opts...)
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	return lim, func() { src.Close() }, nil
}

// SampleGauges keeps the gauges of a process's connection and budget
// current every second until ctx ends: NATS connected (connected), the
// budget paused, its tokens available, and the estimate of the other
// tools' requests from the shared budget's view of the API (the gauge
// stays as it was without a live view).
func SampleGauges(ctx context.Context, m *metrics.Metrics, connected func() bool, lim *ratelimit.Limiter) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for {
		m.NATSConnected.Set(b2f(connected()))
		m.BudgetPaused.Set(b2f(lim.Paused()))
		m.BudgetTokens.Set(lim.Available())
		if src, ok := lim.Source().(*Source); ok {
			if v, ok := src.APIView(); ok {
				m.APIOtherRequests.Set(float64(v.Others))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
