package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/jobs/budget"
	"github.com/reconciler/reconciler/metrics"
)

// rateLimitAuto is the --rate-limit value that takes the budget from the
// API's Ratelimit-Policy.
const rateLimitAuto = "auto"

// autoStartBudget is the conservative budget of --rate-limit auto per
// ratelimit.DefaultWindow until the first answer's policy arrives: a tenth of
// the default.
const autoStartBudget = ratelimit.DefaultBudget / 10

// registerUserBudget registers the flags of the user's budget.
func (a *apiFlags) registerUserBudget(f *flagSet) {
	f.str(&a.rateReserve, "rate-reserve", "RECONCILER_RATE_RESERVE", "10%",
		"requests of the API's quota left for people and other tools when the API says what is left: N, or P% of the Ratelimit-Policy quota")
	f.str(&a.budgetKey, "budget-key", "RECONCILER_BUDGET_KEY", "",
		"identity the shared budget is keyed by (the user the API counts); default: the user id from GET /user, else the token's id, else the token")
	f.BoolVar(&a.localBudget, "local-budget", false,
		"plan, backfill: without a running pipeline's shared budget, spend a budget of this process alone (--rate-limit) against the real API")
}

// validateUserBudget checks --rate-reserve.
func (a *apiFlags) validateUserBudget(f *flagSet) error {
	s := strings.TrimSpace(a.rateReserve)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v >= 100 {
			return usagef("%s: %q: want a percentage from 0%% to below 100%%, or a number of requests", f.name("rate-reserve"), a.rateReserve)
		}
		a.reserveN, a.reserveFrac = 0, v/100
		if v == 0 {
			a.reserveFrac = -1 // none
		}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return usagef("%s: %q: want a number of requests or a percentage such as 10%%", f.name("rate-reserve"), a.rateReserve)
	}
	a.reserveN, a.reserveFrac = n, 0
	if n == 0 {
		a.reserveFrac = -1
	}
	return nil
}

// budgetConfig returns the shared budget's settings for these flags. The
// key is --budget-key, else the identity the API counts (looked up once
// with a request outside the shared budget), else the credentials; the
// log says which.
func budgetConfig(ctx context.Context, a *apiFlags, creds credentialSet, replicas int, log *zap.Logger) budget.Config {
	cfg := budget.Config{Credential: creds.budgetKey(a.baseURL), Budget: a.budget, Window: a.window, Replicas: replicas, Logger: log,
		Auto: a.rateAuto, Reserve: a.reserveN, ReserveFraction: a.reserveFrac}
	switch {
	case a.budgetKey != "":
		cfg.Identity = "key:" + a.budgetKey
		log.Info("rate budget keyed by --budget-key", zap.String("key", budget.KeyForIdentity(cfg.Identity)))
	default:
		id, err := lookupIdentity(ctx, a, creds)
		if err != nil {
			log.Warn("cannot find the API user the rate limit counts; the budget is keyed by the credentials (two tokens of one user then get two budgets; set --budget-key)",
				zap.Error(err), zap.String("key", budget.KeyFor(cfg.Credential)))
			break
		}
		cfg.Identity = id
		log.Info("rate budget keyed by the API user", zap.String("identity_kind", strings.SplitN(id, ":", 2)[0]),
			zap.String("key", budget.KeyForIdentity(id)))
	}
	return cfg
}

// identityLookupBudget is the budget of the identity lookup per 5
// minutes: the smallest whose burst (ratelimit.BurstFor) is two requests.
const identityLookupBudget = 100

// lookupIdentity asks the API for the identity it counts the budget by,
// on a tiny budget of its own: a burst of two requests (GET /user, then
// /user/tokens/verify when the token may not read the user) at once, and
// a retry a few seconds later.
func lookupIdentity(ctx context.Context, a *apiFlags, creds credentialSet) (string, error) {
	lim, err := ratelimit.NewLimiter(identityLookupBudget, 5*time.Minute, 1)
	if err != nil {
		return "", err
	}
	c, err := cfapi.New(cfapi.Config{BaseURL: a.baseURL, Token: creds.token, Email: creds.email, APIKey: creds.key,
		Limiter: lim, UserAgent: "reconciler/" + version, HTTPClient: &http.Client{Timeout: 10 * time.Second},
		Retry: cfapi.RetryPolicy{MaxAttempts: 2}})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return c.BudgetIdentity(ctx)
}

// localBudgetAllowed says whether a tool without a running pipeline's
// budget may spend a budget of its own: always against an emulator or
// another base URL, and against the real API only with --local-budget.
func localBudgetAllowed(a *apiFlags) error {
	if a.localBudget || strings.TrimRight(a.baseURL, "/") != cfapi.DefaultBaseURL {
		return nil
	}
	return usagef("no running reconciler's shared budget is reachable (--nats-url): refusing to spend a private budget with a production token, "+
		"which other tools and replicas would not see; start `reconciler run`, pass --nats-url, or pass --local-budget to use %s alone", rateText(a))
}

func rateText(a *apiFlags) string {
	if a.rateAuto {
		return fmt.Sprintf("%d/%s (auto's conservative start)", a.budget, a.window)
	}
	return a.rateLimit
}

// sampleUserBudget sets the estimate of the other tools' requests from the
// shared budget's view of the API (the gauge stays as it was without a
// live view).
func sampleUserBudget(m *metrics.Metrics, lim *ratelimit.Limiter) {
	src, ok := lim.Source().(*budget.Source)
	if !ok {
		return
	}
	if v, ok := src.APIView(); ok {
		m.APIOtherRequests.Set(float64(v.Others))
	}
}
