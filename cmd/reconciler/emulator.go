package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
)

func cmdEmulator(ctx context.Context, args []string, stdout, stderr io.Writer, e env) error {
	var addr, rateLimit, token string
	var failRate, throttleRate, resetRate, otherToolRate float64
	var rateSliding bool
	var latency time.Duration
	var seedTenants int
	var seedNamespace, namespaces string
	f := newFlagSet("emulator", e, stderr)
	f.str(&addr, "addr", "RECONCILER_EMULATOR_ADDR", "127.0.0.1:8787", "listen address; the API is served under /client/v4")
	f.str(&rateLimit, "rate-limit", "", "", "enforce a budget like the real API, REQUESTS/DURATION (e.g. 1200/5m); empty = none")
	f.str(&token, "token", "", "", "require this API token (Authorization: Bearer); empty = no auth")
	f.BoolVar(&rateSliding, "rate-sliding", false, "count --rate-limit over a strict sliding window that blocks the token for a window when exceeded, as the real API does")
	f.Float64Var(&otherToolRate, "other-tool-rate", 0, "another tool spends this many requests per second of --rate-limit outside the reconciler")
	f.Float64Var(&failRate, "fail-rate", 0, "fraction of requests answered 5xx (code 10013)")
	f.Float64Var(&throttleRate, "throttle-rate", 0, "fraction of requests answered 429 (code 971)")
	f.Float64Var(&resetRate, "reset-rate", 0, "fraction of connections reset without an answer")
	f.DurationVar(&latency, "latency", 0, "latency added to every request")
	f.integer(&seedTenants, "seed-tenants", "", 0, "create this many tenant scripts in --seed-namespace (and the namespace)")
	f.str(&seedNamespace, "seed-namespace", "", "customers", "dispatch namespace of seeded tenants")
	f.str(&namespaces, "namespaces", "", "customers,my-ns", "dispatch namespaces to create at start in account "+cfapitest.DefaultAccount+", comma-separated (my-ns is the namespace of the wrangler captures)")
	if err := f.parse(args); err != nil {
		return err
	}
	for name, v := range map[string]float64{"fail-rate": failRate, "throttle-rate": throttleRate, "reset-rate": resetRate} {
		if v < 0 || v > 1 {
			return usagef("--%s: must be between 0 and 1, got %v", name, v)
		}
	}
	if seedTenants < 0 {
		return usagef("--seed-tenants: must not be negative")
	}
	opts := cfapitest.Options{Token: token, Faults: cfapitest.Faults{FailRate: failRate, ThrottleRate: throttleRate, ResetRate: resetRate, Latency: latency}}
	if rateLimit != "" {
		n, w, err := cfapi.ParseRate(rateLimit)
		if err != nil {
			return usagef("--rate-limit: %v", err)
		}
		opts.RateLimit, opts.RateWindow, opts.RateSliding = n, w, rateSliding
	}
	if otherToolRate < 0 || (otherToolRate > 0 && rateLimit == "") {
		return usagef("--other-tool-rate: must be positive and needs --rate-limit, got %v", otherToolRate)
	}
	opts.OtherToolRate = otherToolRate
	emu := cfapitest.New(opts)
	for _, ns := range strings.Split(namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns == "" {
			continue
		}
		if err := emu.CreateNamespace(cfapitest.DefaultAccount, ns); err != nil {
			return usagef("--namespaces: %v", err)
		}
	}
	if seedTenants > 0 {
		if err := emu.Seed(cfapitest.DefaultAccount, []string{seedNamespace}, seedTenants); err != nil {
			return usagef("--seed-namespace: %v", err)
		}
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return emu.ListenAndServe(ctx, addr, func(baseURL string) {
		fmt.Fprintf(stdout, "Cloudflare API emulator serving at %s\n", baseURL)
		if seedTenants > 0 {
			fmt.Fprintf(stdout, "seeded %d tenants in account %s, dispatch namespace %s\n", seedTenants, cfapitest.DefaultAccount, seedNamespace)
		}
		fmt.Fprintf(stdout, "use: CLOUDFLARE_API_BASE_URL=%s\n", baseURL)
	})
}
