package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs"
	"github.com/reconciler/reconciler/internal/planner"
)

// validationPlanner validates events; its fingerprint key is irrelevant
// because it never plans.
func validationPlanner() *planner.Planner {
	p, _ := planner.New(planner.Options{FingerprintKey: []byte("validation-only")})
	return p
}

func cmdPublish(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, e env) error {
	var c common
	var noValidate bool
	f := newFlagSet("publish", e, stderr)
	c.register(f)
	f.BoolVar(&noValidate, "no-validate", false, "send lines as they are, even invalid events (to test dead-lettering)")
	f.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reconciler publish [flags] FILE|-\n\nPublishes events (JSON lines, EVENTS.md) to <prefix>.<account>.<namespace>.<script> with Nats-Msg-Id = event id.")
		f.PrintDefaults()
	}
	if err := f.parse(args); err != nil {
		return err
	}
	name, err := oneArg(f, "input", false)
	if err != nil {
		return err
	}
	if err := c.validate(f); err != nil {
		return err
	}
	in, err := openInput(name, stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	log := c.logger(stderr)
	conn, err := connectNATS(&c, false, log)
	if err != nil {
		return err
	}
	defer conn.close(log, 5*time.Second)
	// The stream must exist before publishing; create it like run does.
	if _, err := conn.js.Stream(ctx, jobs.Names{}.WithDefaults().Stream); err != nil {
		if _, err := jobs.EnsureStreams(ctx, conn.js, jobs.SetupConfig{Names: jobs.Names{SubjectPrefix: c.subjectPrefix}}); err != nil {
			return fmt.Errorf("setting up JetStream: %w", err)
		}
	}
	sum, err := jobs.Publish(ctx, conn.js, c.subjectPrefix, in, !noValidate, validationPlanner())
	for _, msg := range sum.Errors {
		fmt.Fprintln(stderr, msg)
	}
	fmt.Fprintf(stdout, "published %d events (%d duplicates dropped by the stream, %d invalid)\n", sum.Published, sum.Duplicates, sum.Invalid)
	if err != nil {
		return err
	}
	if len(sum.Errors) > 0 {
		return &failedError{msg: fmt.Sprintf("%d lines were not published", len(sum.Errors))}
	}
	return nil
}

func cmdEmulator(ctx context.Context, args []string, stdout, stderr io.Writer, e env) error {
	var addr, rateLimit, token string
	var failRate, throttleRate, resetRate float64
	var latency time.Duration
	var seedTenants int
	var seedNamespace, namespaces string
	f := newFlagSet("emulator", e, stderr)
	f.str(&addr, "addr", "RECONCILER_EMULATOR_ADDR", "127.0.0.1:8787", "listen address; the API is served under /client/v4")
	f.str(&rateLimit, "rate-limit", "", "", "enforce a budget like the real API, REQUESTS/DURATION (e.g. 1200/5m); empty = none")
	f.str(&token, "token", "", "", "require this API token (Authorization: Bearer); empty = no auth")
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
		opts.RateLimit, opts.RateWindow = n, w
	}
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

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer, e env) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return usagef("dlq needs a subcommand: list or replay")
	}
	sub := args[0]
	var c common
	var script, reason, output string
	var limit int
	var seqs string
	var keep bool
	f := newFlagSet("dlq "+sub, e, stderr)
	c.register(f)
	f.str(&script, "script", "", "", "only dead letters of this script: ACCOUNT.NAMESPACE.SCRIPT (namespace _ for ordinary Workers; * wildcards allowed)")
	f.str(&reason, "reason", "", "", "only dead letters with this reason")
	f.IntVar(&limit, "limit", 0, "at most this many dead letters (0 = all)")
	if sub == "list" {
		f.str(&output, "output", "", "text", "output: text or json (JSON lines)")
	} else {
		f.str(&seqs, "seq", "", "", "only these dead-letter sequence numbers, comma-separated")
		f.BoolVar(&keep, "keep", false, "keep replayed dead letters in the stream (default: delete them once republished)")
	}
	if err := f.parse(args[1:]); err != nil {
		return err
	}
	if len(f.pos) > 0 {
		return usagef("dlq %s takes no arguments, got %q", sub, f.pos)
	}
	if err := c.validate(f); err != nil {
		return err
	}
	if output != "" && output != "text" && output != "json" {
		return usagef("--output: must be text or json, got %q", output)
	}
	if limit < 0 {
		return usagef("--limit: must not be negative")
	}
	filter := ""
	names := jobs.Names{SubjectPrefix: c.subjectPrefix}.WithDefaults()
	if script != "" {
		if strings.Count(script, ".") != 2 {
			return usagef("--script: want ACCOUNT.NAMESPACE.SCRIPT, got %q", script)
		}
		filter = names.DLQPrefix + "." + script
	}
	wantSeq := map[uint64]bool{}
	if seqs != "" {
		for _, s := range strings.Split(seqs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return usagef("--seq: %q is not a sequence number", s)
			}
			wantSeq[n] = true
		}
	}
	log := c.logger(stderr)
	conn, err := connectNATS(&c, false, log)
	if err != nil {
		return err
	}
	defer conn.close(log, 5*time.Second)
	entries, err := jobs.ListDeadLetters(ctx, conn.js, names.DLQStream, filter, 0)
	if err != nil {
		return err
	}
	var selected []jobs.DLQEntry
	for _, en := range entries {
		if reason != "" && en.Record.Reason != reason {
			continue
		}
		if len(wantSeq) > 0 && !wantSeq[en.Seq] {
			continue
		}
		selected = append(selected, en)
		if limit > 0 && len(selected) >= limit {
			break
		}
	}
	if sub == "list" {
		for _, en := range selected {
			if output == "json" {
				line, _ := json.Marshal(en)
				fmt.Fprintln(stdout, string(line))
				continue
			}
			fmt.Fprintf(stdout, "#%d  %s  %-18s  event=%s  subject=%s  attempts=%d\n    %s\n",
				en.Seq, en.Record.FailedAt.Format(time.RFC3339), en.Record.Reason, orDash(en.Record.EventID),
				en.Record.Subject, en.Record.Attempts, en.Record.Error)
		}
		fmt.Fprintf(stdout, "%d dead letters\n", len(selected))
		return nil
	}
	failed := 0
	for _, en := range selected {
		r := jobs.ReplayDeadLetter(ctx, conn.js, names, en, !keep)
		if r.Error != "" {
			failed++
			fmt.Fprintf(stderr, "#%d event=%s: %s\n", r.Seq, orDash(r.EventID), r.Error)
			continue
		}
		fmt.Fprintf(stdout, "#%d event=%s replayed from the %s to %s\n", r.Seq, orDash(r.EventID), r.Source, r.Subject)
	}
	fmt.Fprintf(stdout, "replayed %d of %d dead letters\n", len(selected)-failed, len(selected))
	if failed > 0 {
		return &failedError{msg: fmt.Sprintf("%d dead letters could not be replayed", failed)}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
