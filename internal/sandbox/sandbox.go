package sandbox

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// Namespace is the dispatch namespace of the sandbox's tenants.
const Namespace = "customers"

// DemoPatch is the demo backfill's patch: every tenant gets ASSETS and
// REGION, and loses METRICS.
const DemoPatch = `{"upsert":[{"type":"r2_bucket","name":"ASSETS","bucket_name":"sandbox-assets"},{"type":"plain_text","name":"REGION","text":"eu"}],"remove":["METRICS"]}`

// Emulator is the API emulator of a sandbox, serving until Close.
type Emulator struct {
	*cfapitest.Server
	// URL is the API base URL the reconciler is pointed at.
	URL  string
	stop context.CancelFunc
	done chan struct{}
}

// StartEmulator seeds an emulator with tenants scripts in Namespace,
// enforcing the budget of budget requests per window as the real API
// would, and serves it on addr, or on a free port of addr's host when
// addr is taken.
func StartEmulator(ctx context.Context, addr string, tenants, budget int, window time.Duration) (*Emulator, error) {
	emu := cfapitest.New(cfapitest.Options{RateLimit: budget, RateWindow: window, RateSliding: true, RateBlock: window})
	if err := emu.SeedVaried(cfapitest.DefaultAccount, Namespace, tenants); err != nil {
		return nil, err
	}
	ln, err := ListenOrFree(addr)
	if err != nil {
		return nil, err
	}
	e := &Emulator{Server: emu, URL: "http://" + ln.Addr().String() + emu.Prefix(), done: make(chan struct{})}
	var emuCtx context.Context
	emuCtx, e.stop = context.WithCancel(context.WithoutCancel(ctx))
	go func() { defer close(e.done); _ = emu.Serve(emuCtx, ln) }()
	return e, nil
}

// Close stops the emulator and waits until it has.
func (e *Emulator) Close() {
	e.stop()
	<-e.done
}

// LiveEvents publishes five live events to random tenants once the
// backfill is under way (the emulator has seen some writes) and returns
// how long each took to be applied, sorted.
func LiveEvents(ctx context.Context, emu *cfapitest.Server, js jetstream.JetStream, tenants int, log *zap.Logger) []time.Duration {
	for emu.Stats().Writes < min(tenants/5, 50) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	var out []time.Duration
	defer func() { sort.Slice(out, func(i, j int) bool { return out[i] < out[j] }) }()
	for i := 0; i < 5; i++ {
		t := cfapitest.TenantName(rand.IntN(tenants) + 1)
		ev := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"live-%d-%d","account_id":%q,"dispatch_namespace":%q,"script":%q,"op":"patch","upsert":[{"type":"plain_text","name":"LIVE_%d","text":"now"}]}`,
			time.Now().UnixNano(), i, cfapitest.DefaultAccount, Namespace, t, i)
		start := time.Now()
		if _, err := tools.Publish(ctx, js, "bindings", strings.NewReader(ev), tools.CheckEvent); err != nil {
			log.Warn("publishing a live event", zap.Error(err))
			continue
		}
		for {
			bs, _ := emu.Bindings(cfapitest.DefaultAccount, Namespace, t)
			if _, ok := wire.Bindings(bs).ByName(fmt.Sprintf("LIVE_%d", i)); ok {
				out = append(out, time.Since(start))
				break
			}
			if ctx.Err() != nil || time.Since(start) > time.Minute {
				return out
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return out
}

// Report writes what the demo did: the live events' latency, the first
// tenant's bindings before and after, and the emulator's API calls.
func Report(w io.Writer, emu *cfapitest.Server, before []wire.Binding, live []time.Duration, budget, metricsURL string) {
	var slowest time.Duration
	for _, d := range live {
		slowest = max(slowest, d)
	}
	fmt.Fprintf(w, "\nlive events during the backfill: %d, each applied within %s of its publish (max)\n", len(live), slowest.Round(time.Millisecond))
	after, _ := emu.Bindings(cfapitest.DefaultAccount, Namespace, cfapitest.TenantName(1))
	fmt.Fprintf(w, "%s bindings before: %s\n%s bindings after:  %s\n", cfapitest.TenantName(1), names(before), cfapitest.TenantName(1), names(after))
	st := emu.Stats()
	fmt.Fprintf(w, "API calls: %d reads, %d writes, %d answered 429 (budget %s)\n", st.Reads, st.Writes, st.Throttled, budget)
	if metricsURL != "" {
		fmt.Fprintf(w, "metrics: %s\n", metricsURL)
	}
}

// Try writes how to use a sandbox that stays up.
func Try(w io.Writer, apiURL, natsURL string) {
	acct := cfapitest.DefaultAccount
	fmt.Fprintf(w, "\nThe sandbox stays up until Ctrl-C. Try:\n"+
		"  export CLOUDFLARE_API_BASE_URL=%s CLOUDFLARE_ACCOUNT_ID=%s NATS_URL=%s\n"+
		"  echo '{\"schema\":\"bindings.change/v1\",\"id\":\"try-1\",\"account_id\":\"%s\",\"dispatch_namespace\":\"%s\",\"script\":\"tenant-0001\",\"op\":\"patch\",\"upsert\":[{\"type\":\"plain_text\",\"name\":\"HELLO\",\"text\":\"world\"}]}' | reconciler publish -\n"+
		"  curl -s %s/accounts/%s/workers/dispatch/namespaces/%s/scripts/tenant-0001/settings\n",
		apiURL, acct, natsURL, acct, Namespace, apiURL, acct, Namespace)
}

func names(bs []wire.Binding) string {
	out := wire.Bindings(bs).Names()
	sort.Strings(out)
	return strings.Join(out, " ")
}

// ListenOrFree listens on addr, or on a free port of its host when addr
// is taken.
func ListenOrFree(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	host, _, serr := net.SplitHostPort(addr)
	if serr != nil {
		return nil, err
	}
	return net.Listen("tcp", net.JoinHostPort(host, "0"))
}

// FreeIfTaken returns addr if it can be listened on now, else a free port
// on its host.
func FreeIfTaken(addr string) string {
	if addr == "" {
		return addr
	}
	ln, err := ListenOrFree(addr)
	if err != nil {
		return addr
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Env gives the sandbox its own defaults over getenv: a budget scaled so
// the demo takes seconds (the emulator enforces the same), readable logs.
// A variable that is set wins.
func Env(getenv func(string) string) func(string) string {
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		switch k {
		case "RECONCILER_RATE_LIMIT":
			return "400/1s"
		case "RECONCILER_LOG_FORMAT":
			return "console"
		case "RECONCILER_LOG_LEVEL":
			return "warn"
		}
		return ""
	}
}

// EmulatorConfig is what `reconciler emulator` serves.
type EmulatorConfig struct {
	// Addr is the listen address; the API is under /client/v4.
	Addr    string
	Options cfapitest.Options
	// Namespaces are created at start in cfapitest.DefaultAccount.
	Namespaces []string
	// SeedTenants tenant scripts are created in SeedNamespace.
	SeedTenants   int
	SeedNamespace string
}

// ServeEmulator creates the namespaces and tenants of c, then serves the
// emulator until ctx ends, saying on w where and how to use it. A
// namespace the emulator refuses is a usage error naming its flag.
func ServeEmulator(ctx context.Context, c EmulatorConfig, w io.Writer) error {
	emu := cfapitest.New(c.Options)
	for _, ns := range c.Namespaces {
		if ns = strings.TrimSpace(ns); ns == "" {
			continue
		}
		if err := emu.CreateNamespace(cfapitest.DefaultAccount, ns); err != nil {
			return clihelp.Usagef("--namespaces: %v", err)
		}
	}
	if c.SeedTenants > 0 {
		if err := emu.Seed(cfapitest.DefaultAccount, []string{c.SeedNamespace}, c.SeedTenants); err != nil {
			return clihelp.Usagef("--seed-namespace: %v", err)
		}
	}
	return emu.ListenAndServe(ctx, c.Addr, func(baseURL string) {
		fmt.Fprintf(w, "Cloudflare API emulator serving at %s\n", baseURL)
		if c.SeedTenants > 0 {
			fmt.Fprintf(w, "seeded %d tenants in account %s, dispatch namespace %s\n", c.SeedTenants, cfapitest.DefaultAccount, c.SeedNamespace)
		}
		fmt.Fprintf(w, "use: CLOUDFLARE_API_BASE_URL=%s\n", baseURL)
	})
}
