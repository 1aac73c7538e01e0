package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/sandbox"
)

// emulatorFlags are the flags of `reconciler emulator`.
type emulatorFlags struct {
	addr, rateLimit, token                           string
	failRate, throttleRate, resetRate, otherToolRate float64
	rateSliding                                      bool
	latency                                          time.Duration
	seedTenants                                      int
	seedNamespace, namespaces                        string
}

func newEmulatorCmd(a *app) *cobra.Command {
	var ef emulatorFlags
	cmd := &cobra.Command{
		Use:   "emulator [flags]",
		Short: "serve the Cloudflare API emulator on --addr until stopped",
		Long: `Serves the in-process Cloudflare API emulator (the Workers endpoints the
reconciler and wrangler use) on --addr, under /client/v4, until Ctrl-C. It can
seed tenant scripts, enforce a rate limit like the real API and inject faults.`,
		Example: `  reconciler emulator --tenants 1000
  reconciler emulator --rate-limit 1200/5m --rate-sliding --fail-rate 0.01
  CLOUDFLARE_API_BASE_URL=http://127.0.0.1:8787/client/v4 reconciler plan events.jsonl`,
	}
	f := clihelp.CommandFlags(cmd, a.env)
	ef.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runEmulator(ctx, a, f, &ef) })
	return cmd
}

func (ef *emulatorFlags) register(f *clihelp.Flags) {
	f.Str(&ef.addr, "addr", "RECONCILER_EMULATOR_ADDR", "127.0.0.1:8787", "listen address; the API is served under /client/v4")
	f.Str(&ef.rateLimit, "rate-limit", "", "", "enforce a budget like the real API, REQUESTS/DURATION (e.g. 1200/5m); empty = none")
	f.Str(&ef.token, "token", "", "", "require this API token (Authorization: Bearer); empty = no auth")
	f.BoolVar(&ef.rateSliding, "rate-sliding", false, "count --rate-limit over a strict sliding window that blocks the token for a window when exceeded, as the real API does")
	f.Float64Var(&ef.otherToolRate, "other-tool-rate", 0, "another tool spends this many requests per second of --rate-limit outside the reconciler")
	f.Float64Var(&ef.failRate, "fail-rate", 0, "fraction of requests answered 5xx (code 10013)")
	f.Float64Var(&ef.throttleRate, "throttle-rate", 0, "fraction of requests answered 429 (code 971)")
	f.Float64Var(&ef.resetRate, "reset-rate", 0, "fraction of connections reset without an answer")
	f.DurationVar(&ef.latency, "latency", 0, "latency added to every request")
	f.Int(&ef.seedTenants, "tenants", "", 0, "create this many tenant scripts in --seed-namespace (and the namespace)")
	f.Alias("seed-tenants", "tenants")
	f.Str(&ef.seedNamespace, "seed-namespace", "", "customers", "dispatch namespace of seeded tenants")
	f.Str(&ef.namespaces, "namespaces", "", "customers,my-ns", "dispatch namespaces to create at start in account "+cfapitest.DefaultAccount+", comma-separated (my-ns is the namespace of the wrangler captures)")
}

func runEmulator(ctx context.Context, a *app, f *clihelp.Flags, ef *emulatorFlags) error {
	if err := f.NoArgs(""); err != nil {
		return err
	}
	for name, v := range map[string]float64{"fail-rate": ef.failRate, "throttle-rate": ef.throttleRate, "reset-rate": ef.resetRate} {
		if v < 0 || v > 1 {
			return clihelp.Usagef("--%s: must be between 0 and 1, got %v", name, v)
		}
	}
	if ef.seedTenants < 0 {
		return clihelp.Usagef("--tenants: must not be negative")
	}
	opts := cfapitest.Options{Token: ef.token, Faults: cfapitest.Faults{FailRate: ef.failRate, ThrottleRate: ef.throttleRate, ResetRate: ef.resetRate, Latency: ef.latency}}
	if ef.rateLimit != "" {
		n, w, err := ratelimit.ParseRate(ef.rateLimit)
		if err != nil {
			return clihelp.Usagef("--rate-limit: %v", err)
		}
		opts.RateLimit, opts.RateWindow, opts.RateSliding = n, w, ef.rateSliding
	}
	if ef.otherToolRate < 0 || (ef.otherToolRate > 0 && ef.rateLimit == "") {
		return clihelp.Usagef("--other-tool-rate: must be positive and needs --rate-limit, got %v", ef.otherToolRate)
	}
	opts.OtherToolRate = ef.otherToolRate
	return sandbox.ServeEmulator(ctx, sandbox.EmulatorConfig{Addr: ef.addr, Options: opts, Namespaces: strings.Split(ef.namespaces, ","),
		SeedTenants: ef.seedTenants, SeedNamespace: ef.seedNamespace}, a.stdout)
}
