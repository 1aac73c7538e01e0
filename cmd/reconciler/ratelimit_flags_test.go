package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/budget"
	"github.com/reconciler/reconciler/internal/testutil"
)

// parseAPIFlags parses and validates the API flags of args and env as a
// command does.
func parseAPIFlags(args []string, e map[string]string) (apiFlags, error) {
	var a apiFlags
	f := clihelp.NewFlags("test", envMap(e), io.Discard)
	a.register(f)
	if err := f.ParseArgs(args); err != nil {
		return a, err
	}
	return a, a.validate(f)
}

// TestRateLimitAndReserveFlags: --rate-limit auto starts on a tenth of the
// default budget and follows the policy; --rate-reserve takes a
// percentage of the quota or a number of requests (0 and 0% keep none
// back); a bad value is a usage error naming the flag or its variable.
func TestRateLimitAndReserveFlags(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		env      map[string]string
		auto     bool
		budget   int
		window   time.Duration
		reserveN int
		frac     float64
	}{
		{"defaults", nil, nil, false, ratelimit.DefaultBudget, ratelimit.DefaultWindow, 0, 0.10},
		{"fixed rate", []string{"--rate-limit", "1100/5m"}, nil, false, 1100, 5 * time.Minute, 0, 0.10},
		{"auto", []string{"--rate-limit", "auto"}, nil, true, autoStartBudget, ratelimit.DefaultWindow, 0, 0.10},
		{"auto from env", nil, map[string]string{"RECONCILER_RATE_LIMIT": "auto"}, true, autoStartBudget, ratelimit.DefaultWindow, 0, 0.10},
		{"reserve 10%", []string{"--rate-reserve", "10%"}, nil, false, ratelimit.DefaultBudget, ratelimit.DefaultWindow, 0, 0.10},
		{"reserve 25.5%", []string{"--rate-reserve", "25.5%"}, nil, false, ratelimit.DefaultBudget, ratelimit.DefaultWindow, 0, 0.255},
		{"reserve 0", []string{"--rate-reserve", "0"}, nil, false, ratelimit.DefaultBudget, ratelimit.DefaultWindow, 0, -1},
		{"reserve 0%", []string{"--rate-reserve", "0%"}, nil, false, ratelimit.DefaultBudget, ratelimit.DefaultWindow, 0, -1},
		{"reserve 50", []string{"--rate-reserve", "50"}, nil, false, ratelimit.DefaultBudget, ratelimit.DefaultWindow, 50, 0},
		{"reserve from env", []string{"--rate-limit", "auto"}, map[string]string{"RECONCILER_RATE_RESERVE": "120"}, true, autoStartBudget, ratelimit.DefaultWindow, 120, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := parseAPIFlags(c.args, c.env)
			if err != nil {
				t.Fatal(err)
			}
			if a.rateAuto != c.auto || a.budget != c.budget || a.window != c.window {
				t.Errorf("auto=%v budget=%d/%s, want auto=%v %d/%s", a.rateAuto, a.budget, a.window, c.auto, c.budget, c.window)
			}
			if a.reserveN != c.reserveN || fmt.Sprintf("%.4f", a.reserveFrac) != fmt.Sprintf("%.4f", c.frac) {
				t.Errorf("reserve n=%d frac=%v, want n=%d frac=%v", a.reserveN, a.reserveFrac, c.reserveN, c.frac)
			}
		})
	}
	if autoStartBudget*10 != ratelimit.DefaultBudget {
		t.Errorf("auto starts on %d, want a tenth of %d", autoStartBudget, ratelimit.DefaultBudget)
	}

	bad := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--rate-reserve", "ten"}, nil, "--rate-reserve"},
		{[]string{"--rate-reserve", "-1"}, nil, "--rate-reserve"},
		{[]string{"--rate-reserve", "100%"}, nil, "--rate-reserve"},
		{[]string{"--rate-reserve", "-5%"}, nil, "--rate-reserve"},
		{[]string{"--rate-reserve", "x%"}, nil, "--rate-reserve"},
		{[]string{"--rate-reserve", "1.5"}, nil, "--rate-reserve"},
		{[]string{"--rate-reserve", ""}, nil, "--rate-reserve"},
		{nil, map[string]string{"RECONCILER_RATE_RESERVE": "lots"}, "RECONCILER_RATE_RESERVE"},
		{[]string{"--rate-limit", "automatic"}, nil, "--rate-limit"},
		{[]string{"--rate-limit", "Auto"}, nil, `"auto"`},
	}
	for _, c := range bad {
		_, err := parseAPIFlags(c.args, c.env)
		var ue *clihelp.UsageError
		if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: got %v, want a usage error naming %s", c.args, c.env, err, c.want)
		}
	}
	// Through the command: exit 2 and the flag named on stderr.
	code, _, stderr := call(t, map[string]string{"CLOUDFLARE_API_TOKEN": "t"}, "", "run", "--rate-reserve", "150%")
	if code != 2 || !strings.Contains(stderr, "--rate-reserve") {
		t.Errorf("run --rate-reserve 150%%: exit %d, stderr %q", code, stderr)
	}
}

// TestBudgetKeyFlag: the shared budget is keyed by --budget-key without
// asking the API; else by the user GET /user names (two tokens of one
// user share it); else, when the API cannot say, by the credentials with a
// warning. No log line holds the token.
func TestBudgetKeyFlag(t *testing.T) {
	const token, other = "tok-budget-key-secret-1", "tok-budget-key-secret-2"
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{Token: token, MoreTokens: []string{other}})
	userKey := budget.KeyForIdentity("user:" + cfapitest.DefaultUserID)
	cases := []struct {
		name      string
		args      []string
		env       map[string]string
		token     string
		baseURL   string
		identity  string
		key       string // in the log line
		message   string
		requests  int // to the API, for the lookup
		wantLevel zapcore.Level
	}{
		{"flag", []string{"--budget-key", "team-a"}, nil, token, base, "key:team-a", budget.KeyForIdentity("key:team-a"), "keyed by --budget-key", 0, zap.InfoLevel},
		{"env", nil, map[string]string{"RECONCILER_BUDGET_KEY": "team-b"}, token, base, "key:team-b", budget.KeyForIdentity("key:team-b"), "keyed by --budget-key", 0, zap.InfoLevel},
		{"user", nil, nil, token, base, "user:" + cfapitest.DefaultUserID, userKey, "keyed by the API user", 1, zap.InfoLevel},
		{"second token of the user", nil, nil, other, base, "user:" + cfapitest.DefaultUserID, userKey, "keyed by the API user", 1, zap.InfoLevel},
		{"API refuses the lookup", nil, nil, "tok-not-the-users", base, "", budget.KeyFor("tok-not-the-users"), "keyed by the credentials", 2, zap.WarnLevel},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := parseAPIFlags(append([]string{"--api-base-url", c.baseURL}, c.args...), c.env)
			if err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.DebugLevel)
			emu.ResetStats()
			cfg := a.spec().Config(context.Background(), cfapi.Credentials{Token: c.token}, 1, zap.New(core))
			if cfg.Identity != c.identity {
				t.Errorf("identity %q, want %q", cfg.Identity, c.identity)
			}
			if n := emu.Stats().Total; n != c.requests {
				t.Errorf("%d API requests to find the identity, want %d", n, c.requests)
			}
			entries := logs.FilterMessageSnippet(c.message).All()
			if len(entries) != 1 || entries[0].Level != c.wantLevel {
				t.Fatalf("want one %s line saying %q, got %+v", c.wantLevel, c.message, logs.All())
			}
			if got := entries[0].ContextMap()["key"]; got != c.key {
				t.Errorf("logged key %v, want %s", got, c.key)
			}
			for _, e := range logs.All() {
				line := fmt.Sprint(e.Message, e.ContextMap())
				if strings.Contains(line, token) || strings.Contains(line, other) {
					t.Errorf("log line holds the token: %s", line)
				}
			}
		})
	}
}

// TestLocalBudgetFlag: a tool that finds no running pipeline refuses to
// spend a private budget against the real API unless --local-budget is
// given, naming that flag, and proceeds against an emulator without it.
func TestLocalBudgetFlag(t *testing.T) {
	for _, c := range []struct {
		local   bool
		baseURL string
		ok      bool
	}{
		{false, cfapi.DefaultBaseURL, false},
		{false, cfapi.DefaultBaseURL + "/", false},
		{true, cfapi.DefaultBaseURL, true},
		{false, "http://127.0.0.1:8787/client/v4", true},
	} {
		err := (&apiFlags{localBudget: c.local, baseURL: c.baseURL, rateLimit: "1100/5m"}).spec().LocalAllowed()
		if (err == nil) != c.ok {
			t.Errorf("local=%v %s: %v, want allowed=%v", c.local, c.baseURL, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--local-budget") {
			t.Errorf("refusal does not name --local-budget: %v", err)
		}
	}

	// The commands: nothing listens where a running pipeline would.
	events := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"lb1","account_id":"%s","dispatch_namespace":"customers","script":"tenant-0001","op":"patch","upsert":[{"type":"plain_text","name":"X","text":"y"}]}`+"\n", acct)
	noPipeline := map[string]string{"RECONCILER_EMBEDDED_LISTEN": testutil.FreeAddr(t), "CLOUDFLARE_API_TOKEN": "t"}
	for _, args := range [][]string{
		{"plan", "-"},
		{"backfill", "--dry-run", "--from", "-"},
	} {
		code, _, stderr := call(t, noPipeline, events, args...)
		if code != 2 || !strings.Contains(stderr, "--local-budget") {
			t.Errorf("%v against the real API without a pipeline: exit %d, stderr %q; want 2 naming --local-budget", args, code, stderr)
		}
	}
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(acct, []string{"customers"}, 1); err != nil {
		t.Fatal(err)
	}
	withEmu := map[string]string{"RECONCILER_EMBEDDED_LISTEN": noPipeline["RECONCILER_EMBEDDED_LISTEN"], "CLOUDFLARE_API_BASE_URL": base}
	code, out, stderr := call(t, withEmu, events, "plan", "-")
	if code != 0 || !strings.Contains(out, "+ plain_text X") || !strings.Contains(stderr, "uses the API budget alone") {
		t.Errorf("plan against the emulator without a pipeline: exit %d\n%s%s", code, out, stderr)
	}
}

// TestRunPublishesTheUsersBudget runs the real binary against an emulator
// that sends Ratelimit headers: once the pipeline's first answers are in,
// /metrics shows the quota, its window and what is left, the budget
// follows the policy (--rate-limit auto), and the log says the budget is
// keyed by the API user, never showing the token.
func TestRunPublishesTheUsersBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	const token = "tok-run-quota-secret"
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{Token: token, RateLimit: 600, RateWindow: time.Minute})
	if err := emu.Seed(acct, []string{"customers"}, 3); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CLOUDFLARE_API_BASE_URL":    base,
		"CLOUDFLARE_API_TOKEN":       token,
		"RECONCILER_DATA_DIR":        t.TempDir(),
		"RECONCILER_EMBEDDED_LISTEN": testutil.FreeAddr(t),
		"RECONCILER_RATE_LIMIT":      "auto",
		"RECONCILER_RATE_RESERVE":    "60",
	}
	p := startClusterProc(t, "run", env)
	testutil.Eventually(t, 30*time.Second, func() bool { return strings.Contains(p.log.String(), "reconciler running") },
		"run did not start:\n%s", p.log)
	if got := p.counter(t, "reconciler_api_ratelimit_quota"); got != 0 {
		t.Errorf("quota gauge %v before any answer, want 0", got)
	}
	var lines strings.Builder
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&lines, `{"schema":"bindings.change/v1","id":"q-%d","account_id":"%s","dispatch_namespace":"customers","script":"%s","generation":1,"op":"patch","upsert":[{"type":"plain_text","name":"QUOTA","text":"yes"}]}`+"\n",
			i, acct, cfapitest.TenantName(i))
	}
	if code, out, stderr := call(t, env, lines.String(), "publish", "-"); code != 0 {
		t.Fatalf("publish: exit %d\n%s%s", code, out, stderr)
	}
	testutil.Eventually(t, 30*time.Second, func() bool { return p.counter(t, "reconciler_reconcile_total") >= 3 },
		"the pipeline reconciled nothing:\n%s", p.log)

	if got := p.counter(t, "reconciler_api_ratelimit_quota"); got != 600 {
		t.Errorf("reconciler_api_ratelimit_quota %v, want 600", got)
	}
	if got := p.counter(t, "reconciler_api_ratelimit_window_seconds"); got != 60 {
		t.Errorf("reconciler_api_ratelimit_window_seconds %v, want 60", got)
	}
	// The emulator counts every answer of the minute, the identity lookup
	// included; what is left is the quota less some of them.
	if got := p.counter(t, "reconciler_api_ratelimit_remaining"); got <= 0 || got >= 600 {
		t.Errorf("reconciler_api_ratelimit_remaining %v, want within (0, 600)", got)
	}
	if got := p.counter(t, "reconciler_api_ratelimit_reset_seconds"); got <= 0 || got > 60 {
		t.Errorf("reconciler_api_ratelimit_reset_seconds %v, want within (0, 60]", got)
	}
	log := p.log.String()
	for _, want := range []string{
		"rate budget keyed by the API user",
		budget.KeyForIdentity("user:" + cfapitest.DefaultUserID),
		"rate budget taken from the API's Ratelimit-Policy",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, token) {
		t.Errorf("the log shows the API token:\n%s", log)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
}
