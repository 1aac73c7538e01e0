package main

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/budget"
)

// rateLimitAuto is the --rate-limit value that takes the budget from the
// API's Ratelimit-Policy.
const rateLimitAuto = "auto"

// autoStartBudget is the conservative budget of --rate-limit auto per
// ratelimit.DefaultWindow until the first answer's policy arrives: a tenth of
// the default.
const autoStartBudget = ratelimit.DefaultBudget / 10

// registerUserBudget registers the flags of the user's budget.
func (a *apiFlags) registerUserBudget(f *clihelp.Flags) {
	f.Str(&a.rateReserve, "rate-reserve", "RECONCILER_RATE_RESERVE", "10%",
		"requests of the API's quota left for people and other tools when the API says what is left: N, or P% of the Ratelimit-Policy quota")
	f.Str(&a.budgetKey, "budget-key", "RECONCILER_BUDGET_KEY", "",
		"identity the shared budget is keyed by (the user the API counts); default: the user id from GET /user, else the token's id, else the token")
	f.BoolVar(&a.localBudget, "local-budget", false,
		"plan, backfill: without a running pipeline's shared budget, spend a budget of this process alone (--rate-limit) against the real API")
}

// validateUserBudget checks --rate-reserve.
func (a *apiFlags) validateUserBudget(f *clihelp.Flags) error {
	var ok bool
	if a.reserveN, a.reserveFrac, ok = budget.ParseReserve(a.rateReserve); !ok {
		if strings.HasSuffix(strings.TrimSpace(a.rateReserve), "%") {
			return clihelp.Usagef("%s: %q: want a percentage from 0%% to below 100%%, or a number of requests", f.Label("rate-reserve"), a.rateReserve)
		}
		return clihelp.Usagef("%s: %q: want a number of requests or a percentage such as 10%%", f.Label("rate-reserve"), a.rateReserve)
	}
	return nil
}

// budgetConfig returns the shared budget's settings for these flags. The
// key is --budget-key, else the identity the API counts (looked up once
// with a request outside the shared budget), else the credentials; the
// log says which.
func budgetConfig(ctx context.Context, a *apiFlags, creds cfapi.Credentials, replicas int, log *zap.Logger) budget.Config {
	cfg := budget.Config{Credential: creds.BudgetKey(a.baseURL), Budget: a.budget, Window: a.window, Replicas: replicas, Logger: log,
		Auto: a.rateAuto, Reserve: a.reserveN, ReserveFraction: a.reserveFrac}
	budget.Identify(ctx, &cfg, a.budgetKey, func(ctx context.Context) (string, error) {
		return budget.LookupIdentity(ctx, creds.Apply(cfapi.Config{BaseURL: a.baseURL, UserAgent: "reconciler/" + version}))
	}, log)
	return cfg
}

// localBudgetAllowed says whether a tool without a running pipeline's
// budget may spend a budget of its own: always against an emulator or
// another base URL, and against the real API only with --local-budget.
func localBudgetAllowed(a *apiFlags) error {
	if a.localBudget || strings.TrimRight(a.baseURL, "/") != cfapi.DefaultBaseURL {
		return nil
	}
	return clihelp.Usagef("no running reconciler's shared budget is reachable (--nats-url): refusing to spend a private budget with a production token, "+
		"which other tools and replicas would not see; start `reconciler run`, pass --nats-url, or pass --local-budget to use %s alone", rateText(a))
}

func rateText(a *apiFlags) string {
	if a.rateAuto {
		return fmt.Sprintf("%d/%s (auto's conservative start)", a.budget, a.window)
	}
	return a.rateLimit
}
