package main

import (
	"strings"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/budget"
	"github.com/reconciler/reconciler/internal/process"
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

// spec returns the API and budget settings of the flags.
func (a *apiFlags) spec() process.Budget {
	return process.Budget{BaseURL: a.baseURL, RateLimit: a.rateLimit, Budget: a.budget, Window: a.window, Auto: a.rateAuto,
		MaxWrites: a.maxWrites, Reserve: a.reserveN, ReserveFraction: a.reserveFrac, Key: a.budgetKey, Local: a.localBudget,
		UserAgent: "reconciler/" + buildVersion()}
}
