package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/jobs/backfill"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/budget"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/planner"
)

// backfillFlags are the flags of `reconciler backfill`.
type backfillFlags struct {
	pipe           runFlags // the pipeline's flags, used when it runs in this process
	from           string
	namespace      string
	patchFile      string
	tags           stringList
	account        string
	runID          string
	output         string
	dryRun         bool
	skipUnmodified bool
	retryFailed    bool
	progress       string
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
func (s *stringList) Type() string       { return "stringArray" }

func (bf *backfillFlags) register(f *flagSet) {
	bf.pipe.registerPipeline(f)
	f.str(&bf.from, "from", "", "", "events to apply, one per script (JSON lines as in docs/events.md; - for stdin)")
	f.str(&bf.namespace, "dispatch-namespace", "", "", "apply --patch to every script of this dispatch namespace")
	f.alias("namespace", "dispatch-namespace")
	f.str(&bf.patchFile, "patch", "", "", "with --dispatch-namespace: a JSON object with \"upsert\" and/or \"remove\", as in a patch event")
	f.Var(&bf.tags, "tag", "with --dispatch-namespace: only scripts with this tag (NAME or NAME:yes includes, NAME:no excludes; repeatable)")
	f.str(&bf.account, "account", "CLOUDFLARE_ACCOUNT_ID", "", "account of --dispatch-namespace")
	f.str(&bf.runID, "run-id", "", "", "name of the run, to resume it (default: derived from the input)")
	f.str(&bf.output, "output", "", "text", "summary: text or json (the last line of stdout is one JSON object)")
	f.BoolVar(&bf.dryRun, "dry-run", false, "read live state and print each plan and a summary; write nothing")
	f.BoolVar(&bf.skipUnmodified, "skip-unmodified", false, "with --dispatch-namespace: do not read a script whose listed modified_on equals the one recorded when a read last found it converged, and whose desired state is applied (see README)")
	f.BoolVar(&bf.retryFailed, "retry-failed", true, "when resuming a run, queue again the scripts whose result failed (--retry-failed=false keeps their failures)")
	f.str(&bf.progress, "progress", "", "auto", "progress: auto (a bar on a terminal, log lines otherwise), bar, log or none")
}

func (bf *backfillFlags) validate(f *flagSet) error {
	if err := bf.pipe.validate(f); err != nil {
		return err
	}
	switch {
	case bf.from == "" && bf.namespace == "":
		return usagef("give --from FILE, or --dispatch-namespace NS with --patch FILE")
	case bf.from != "" && (bf.namespace != "" || bf.patchFile != "" || len(bf.tags) > 0):
		return usagef("--from cannot be combined with --dispatch-namespace, --patch or --tag")
	case bf.namespace != "" && bf.patchFile == "":
		return usagef("--dispatch-namespace needs --patch FILE (the change to apply to every script)")
	case bf.namespace != "" && bf.account == "":
		return usagef("%s: needed with --dispatch-namespace", f.name("account"))
	case bf.skipUnmodified && bf.namespace == "":
		return usagef("--skip-unmodified needs --dispatch-namespace (it compares the listing's modified_on)")
	case bf.output != "text" && bf.output != "json":
		return usagef("--output: must be text or json, got %q", bf.output)
	}
	if bf.namespace != "" {
		if err := cfapi.ValidateScriptName(bf.namespace); err != nil {
			return usagef("--dispatch-namespace: %v", err)
		}
		if err := cfapi.ValidateAccountID(bf.account); err != nil {
			return usagef("%s: %v", f.name("account"), err)
		}
	}
	if bf.runID != "" {
		if err := state.ValidateRunID(bf.runID); err != nil {
			return usagef("--run-id: %v", err)
		}
	}
	switch bf.progress {
	case "auto", "bar", "log", "none":
	default:
		return usagef("--progress: must be auto, bar, log or none, got %q", bf.progress)
	}
	return nil
}

// backfillSource produces the items of a run.
type backfillSource struct {
	describe string
	// each calls fn with every valid item; invalid input is reported to
	// bad with its position (a line number) and the run goes on.
	each func(ctx context.Context, fn func(backfill.Item) error, bad func(where string, err error)) error
	hash string // of the input, for the default run id
}

func newBackfillCmd(a *app) *cobra.Command {
	var bf backfillFlags
	cmd := &cobra.Command{
		Use:   "backfill (--from FILE | --dispatch-namespace NS --patch FILE [--tag T]) [flags]",
		Short: "bulk reconcile many scripts through the pipeline, behind live events, resumably",
		Long: `Reconciles many scripts through the pipeline, behind live events, resumably,
with progress and a summary: the events of --from (one per script), or --patch
applied to every script of a dispatch namespace. It uses a running
'reconciler run' (--nats-url, or its embedded server on --embedded-listen), or
runs the pipeline in this process when there is none. An interrupted run
resumes where it stopped when started again (same input, or --run-id).`,
		Example: `  reconciler backfill --from events.jsonl
  reconciler backfill --dispatch-namespace customers --patch add-kv.json --tag plan:pro
  reconciler backfill --from events.jsonl --dry-run`,
	}
	f := commandFlags(cmd, a.env)
	bf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runBackfill(ctx, a, f, &bf) })
	cmd.AddCommand(newBackfillSteerCmds(a)...) // backfill_steer.go
	return cmd
}

func runBackfill(ctx context.Context, a *app, f *flagSet, bf *backfillFlags) error {
	stdin, stdout, stderr, e := a.stdin, a.stdout, a.stderr, a.env
	if err := f.noArgs("use --from FILE"); err != nil {
		return err
	}
	if err := bf.validate(f); err != nil {
		return err
	}
	creds, err := credentials(e, bf.pipe.api.baseURL)
	if err != nil {
		return err
	}
	log := bf.pipe.log.logger(stderr)
	defer func() { _ = log.Sync() }()
	if bf.dryRun {
		return bf.dryRunPlans(ctx, stdout, stderr, stdin, creds, e, log)
	}
	conn, stopPipeline, err := bf.pipeline(ctx, creds, e, log)
	if err != nil {
		return err
	}
	defer stopPipeline()
	lim, closeLim, err := newLimiter(ctx, &bf.pipe.api, creds, conn.js, budgetShared, 1, log)
	if err != nil {
		return err
	}
	defer closeLim()
	client, err := newAPIClient(&bf.pipe.api, creds, lim, noHooks, time.Minute)
	if err != nil {
		return err
	}
	src, err := bf.sourceWith(stdin, client, knownScriptsIn(conn.js, bf.pipe.nats.names()), log)
	if err != nil {
		return err
	}
	if bf.runID == "" {
		bf.runID = "bf-" + src.hash[:12]
	}
	sum, err := bf.runOn(ctx, conn, stderr, src, etaRate(lim), log)
	if err != nil {
		return err
	}
	return sum.print(stdout, bf.output)
}

// source builds the run's items from --from or from --namespace/--patch.
func (bf *backfillFlags) source(stdin io.Reader, client *cfapi.Client) (*backfillSource, error) {
	return bf.sourceWith(stdin, client, nil, zap.NewNop())
}

// sourceWith is source where known finds a namespace's scripts when the
// API does not list them (nil: no pipeline state reachable), and log gets
// the one warning of that fallback (backfill_known.go).
func (bf *backfillFlags) sourceWith(stdin io.Reader, client *cfapi.Client, known knownScriptsFunc, log *zap.Logger) (*backfillSource, error) {
	if bf.from != "" {
		in, err := openInput(bf.from, stdin)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(in)
		in.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", bf.from, err)
		}
		sum := sha256.Sum256(data)
		return &backfillSource{describe: "file " + bf.from, hash: hex.EncodeToString(sum[:]),
			each: func(ctx context.Context, fn func(backfill.Item) error, bad func(string, error)) error {
				return eachEventLine(bf.from, data, bf.pipe.nats.subjectPrefix, fn, bad)
			}}, nil
	}
	patch, err := os.ReadFile(bf.patchFile)
	if err != nil {
		return nil, usagef("--patch: %v", err)
	}
	var p struct {
		Upsert []json.RawMessage `json:"upsert"`
		Remove []string          `json:"remove"`
	}
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, usagef("--patch %s: want a JSON object with \"upsert\" and/or \"remove\": %v", bf.patchFile, err)
	}
	if p.Upsert == nil && p.Remove == nil {
		return nil, usagef("--patch %s: needs \"upsert\" or \"remove\"", bf.patchFile)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", bf.account, bf.namespace, strings.Join(bf.tags, ","))
	h.Write(patch)
	hash := hex.EncodeToString(h.Sum(nil))
	// Check the patch once, as the pipeline will, before any listing.
	probe := bf.patchEvent(cfapi.ScriptRef{AccountID: bf.account, Namespace: bf.namespace, Script: "probe"}, p.Upsert, p.Remove, "bf-"+hash[:12])
	if _, err := event.DecodeEvent(probe, "", bf.pipe.nats.subjectPrefix); err != nil {
		return nil, usagef("--patch %s: %v", bf.patchFile, err)
	}
	return &backfillSource{describe: fmt.Sprintf("namespace %s/%s tags %v", bf.account, bf.namespace, []string(bf.tags)), hash: hash,
		each: func(ctx context.Context, fn func(backfill.Item) error, _ func(string, error)) error {
			opts := cfapi.ListScriptsOptions{Tags: normalizeTags(bf.tags), Limit: cfapi.MaxListLimit}
			emitted := map[string]bool{}
			err := client.EachScript(ctx, bf.account, bf.namespace, opts, func(s cfapi.ScriptInfo) error {
				ref := cfapi.ScriptRef{AccountID: bf.account, Namespace: bf.namespace, Script: s.ID}
				emitted[event.ScriptKey(ref)] = true
				return fn(backfill.Item{Ref: ref, Event: bf.patchEvent(ref, p.Upsert, p.Remove, bf.runID), ModifiedOn: s.ModifiedOn})
			})
			if cfapi.IsListUnsupported(err) { // backfill_known.go
				return bf.eachKnownScript(ctx, known, err, emitted, log, func(ref cfapi.ScriptRef) error {
					return fn(backfill.Item{Ref: ref, Event: bf.patchEvent(ref, p.Upsert, p.Remove, bf.runID)})
				})
			}
			return explainListError(err, bf.account, bf.namespace)
		}}, nil
}

// patchEvent is the event a namespace run applies to one script: a patch
// without generation, so it applies as the newest operation when it is
// folded and never makes later live events stale.
func (bf *backfillFlags) patchEvent(ref cfapi.ScriptRef, upsert []json.RawMessage, remove []string, id string) []byte {
	ev := map[string]any{"schema": event.SchemaV1, "id": id, "account_id": ref.AccountID,
		"dispatch_namespace": ref.Namespace, "script": ref.Script, "op": event.OpPatch}
	if upsert != nil {
		ev["upsert"] = upsert
	}
	if remove != nil {
		ev["remove"] = remove
	}
	data, _ := json.Marshal(ev)
	return data
}

// normalizeTags turns NAME into NAME:yes.
func normalizeTags(tags []string) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		if !strings.Contains(t, ":") {
			t += ":yes"
		}
		out[i] = t
	}
	return out
}

// explainListError turns a failed listing into a message that says what
// to check; it stops the run before anything is written.
func explainListError(err error, account, namespace string) error {
	var apiErr *cfapi.APIError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &apiErr) && apiErr.NotFound():
		return fmt.Errorf("dispatch namespace %q does not exist in account %s (nothing was written): %w", namespace, account, err)
	case errors.As(err, &apiErr) && (apiErr.StatusCode == 401 || apiErr.StatusCode == 403):
		return fmt.Errorf("the API rejected the credentials while listing namespace %q (nothing was written); check CLOUDFLARE_API_TOKEN and its permissions: %w", namespace, err)
	}
	return fmt.Errorf("listing namespace %q (nothing was written): %w", namespace, err)
}

// eachEventLine decodes JSON-lines events, one script each. A line that
// is not one, or is longer than an event may be, is reported to bad with
// the input's name and its line number, and the lines after it are read.
func eachEventLine(name string, data []byte, prefix string, fn func(backfill.Item) error, bad func(string, error)) error {
	lr := tools.NewLineReader(bytes.NewReader(data), event.MaxEventBytes, "an event")
	seen := map[string]int{}
	for {
		raw, line, err := lr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		where := fmt.Sprintf("%s line %d", inputName(name), line)
		var tooLong *tools.TooLongError
		if errors.As(err, &tooLong) {
			tooLong.Line = 0 // where names it
			bad(where, tooLong)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", inputName(name), err)
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] == '#' {
			continue
		}
		ev, err := event.DecodeEvent(bytes.Clone(raw), "", prefix)
		if err != nil {
			bad(where, err)
			continue
		}
		if first, dup := seen[ev.Key()]; dup {
			bad(where, fmt.Errorf("script %s is already in this run (line %d); a run holds one event per script", ev.Ref(), first))
			continue
		}
		seen[ev.Key()] = line
		if err := fn(backfill.Item{Ref: ev.Ref(), Event: bytes.Clone(raw)}); err != nil {
			return err
		}
	}
}

// backfillSummary is the outcome of a run as a whole.
type backfillSummary struct {
	Run string `json:"run"`
	backfill.Totals
	Invalid  int              `json:"invalid"`
	Failures []backfillFailed `json:"failures,omitempty"`
	Resumed  bool             `json:"resumed"`
	Seconds  float64          `json:"seconds"`
}

type backfillFailed struct {
	Script string `json:"script"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// print writes the summary table, or the JSON line, and returns the
// run's failure (exit 1) when a script failed.
func (s *backfillSummary) print(w io.Writer, output string) error {
	if output == "json" {
		line, _ := json.Marshal(s)
		fmt.Fprintln(w, string(line))
	} else {
		fmt.Fprintf(w, "backfill run %s%s: %d scripts in %s\n", s.Run, map[bool]string{true: " (resumed)"}[s.Resumed],
			s.Scripts, time.Duration(s.Seconds*float64(time.Second)).Round(time.Second))
		fmt.Fprintf(w, "  %-10s %8d\n  %-10s %8d\n  %-10s %8d\n", "changed", s.Changed, "unchanged", s.Unchanged, "failed", s.Failed)
		for _, f := range s.Failures {
			fmt.Fprintf(w, "  failed: %s  %s  %s\n", f.Script, f.Reason, f.Error)
		}
	}
	if s.Failed > 0 {
		return &failedError{msg: fmt.Sprintf("%d of %d scripts failed (see `reconciler dlq list` for the dead letters)", s.Failed, s.Scripts)}
	}
	return nil
}

// runOn runs the backfill on the pipeline behind conn; rate is the
// requests per second its ETA counts on (etaRate).
func (bf *backfillFlags) runOn(ctx context.Context, conn *natsConn, stderr io.Writer, src *backfillSource, rate func() float64, log *zap.Logger) (*backfillSummary, error) {
	start := time.Now()
	res, err := state.Open(ctx, conn.js, bf.pipe.nats.names())
	if err != nil {
		return nil, err
	}
	b, resumed, err := backfill.Open(ctx, res, state.BackfillRun{ID: bf.runID, Source: src.describe, SkipUnmodified: bf.skipUnmodified, InputDigest: src.hash})
	if err != nil {
		return nil, err
	}
	tr := newTracker(b.Record.ID, stderr, bf.progress, rate, log)
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	caughtUp := make(chan struct{})
	followed := make(chan error, 1)
	go func() {
		followed <- b.Follow(followCtx, func() { close(caughtUp) }, func(r state.BackfillResult) bool { tr.result(r); return true })
	}()
	select {
	case <-caughtUp:
	case err := <-followed:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	total, invalid, err := bf.enqueue(ctx, b, src, tr, log)
	if err != nil {
		return nil, err
	}
	if err := b.SetTotal(ctx, total); err != nil {
		return nil, err
	}
	tr.setTotal(total)
	waitCtx, stopWatch := backfill.UntilCancelled(ctx, res, b.Record.ID)
	defer stopWatch()
	if err := tr.wait(waitCtx, total); err != nil {
		if cause := context.Cause(waitCtx); errors.Is(cause, backfill.ErrCancelled) {
			return nil, cause
		}
		return nil, fmt.Errorf("backfill run %s interrupted (start it again with --run-id %s to resume): %w", b.Record.ID, b.Record.ID, err)
	}
	stopFollow()
	if err := b.Finish(ctx); err != nil {
		log.Warn("recording the end of the run", zap.Error(err))
	}
	sum := tr.summary()
	sum.Resumed, sum.Invalid, sum.Seconds = resumed, len(invalid), time.Since(start).Seconds()
	sum.Scripts += len(invalid)
	sum.Failed += len(invalid)
	sum.Failures = append(invalid, sum.Failures...)
	return sum, nil
}

// enqueue streams the source's items into the run, skipping scripts that
// already have a result, and returns the number of valid items and the
// invalid input.
func (bf *backfillFlags) enqueue(ctx context.Context, b *backfill.Run, src *backfillSource, tr *tracker, log *zap.Logger) (int, []backfillFailed, error) {
	var batch []backfill.Item
	total, queued, already := 0, 0, 0
	flush := func() error {
		q, a, err := b.Enqueue(ctx, batch)
		queued, already = queued+q, already+a
		batch = batch[:0]
		return err
	}
	var invalid []backfillFailed
	err := src.each(ctx, func(it backfill.Item) error {
		total++
		tr.setTotal(total)
		if bf.retryFailed {
			it.Retry = tr.retry(event.ScriptKey(it.Ref)) // backfill_steer.go
		}
		if it.Retry == nil && tr.done(event.ScriptKey(it.Ref)) {
			return nil
		}
		batch = append(batch, it)
		if len(batch) >= 1000 {
			return flush()
		}
		return nil
	}, func(where string, err error) {
		invalid = append(invalid, backfillFailed{Script: where, Reason: "invalid_input", Error: err.Error()})
		log.Warn("invalid backfill input", zap.String("at", where), zap.Error(err))
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return 0, nil, err
	}
	log.Info("backfill enqueued", zap.String("run", b.Record.ID), zap.Int("scripts", total),
		zap.Int("queued", queued), zap.Int("already_queued", already), zap.Int("already_done", total-queued-already),
		zap.Int("invalid", len(invalid)))
	return total, invalid, nil
}

// pipeline connects to the pipeline that will do the work: --nats-url,
// or the embedded server of a running `reconciler run`; when neither is
// there (no --nats-url and nothing on --embedded-listen) it runs the
// pipeline in this process until the returned stop is called.
func (bf *backfillFlags) pipeline(ctx context.Context, creds credentialSet, e env, log *zap.Logger) (*natsConn, func(), error) {
	conn, err := connectNATS(&bf.pipe.nats, false, log)
	if err == nil {
		return conn, func() { conn.close(log, 5*time.Second) }, nil
	}
	if bf.pipe.nats.url != "" {
		return nil, nil, err
	}
	log.Info("no running reconciler found; running the pipeline in this process", zap.String("data_dir", bf.pipe.nats.dataDir))
	if conn, err = connectNATS(&bf.pipe.nats, true, log); err != nil {
		return nil, nil, err
	}
	m, _ := newMetrics()
	runner, _, err := startPipeline(ctx, &bf.pipe, conn, creds, m, e, log)
	if err != nil {
		conn.close(log, time.Second)
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(runCtx) }()
	return conn, func() {
		cancel()
		<-done
		conn.close(log, 5*time.Second)
	}, nil
}

// dryRunPlans prints the plan of every script and a summary; it writes
// nothing anywhere. It plans from the stored state of a reachable
// pipeline, or as a reconciler that has applied nothing.
func (bf *backfillFlags) dryRunPlans(ctx context.Context, stdout, stderr io.Writer, stdin io.Reader, creds credentialSet, e env, log *zap.Logger) error {
	client, conn, closeClient, err := toolClient(ctx, &bf.pipe.nats, &bf.pipe.api, creds, log)
	if err != nil {
		return err
	}
	defer closeClient()
	var js jetstream.JetStream
	if conn != nil {
		js = conn.js
	}
	src, err := bf.sourceWith(stdin, client, knownScriptsIn(js, bf.pipe.nats.names()), log)
	if err != nil {
		return err
	}
	if bf.runID == "" {
		bf.runID = "bf-" + src.hash[:12]
	}
	pf := planFlags{nats: bf.pipe.nats, stored: conn != nil}
	base, pl, err := pf.baseState(ctx, conn, e)
	if err != nil {
		return err
	}
	sum := backfillSummary{Run: bf.runID}
	var events []*event.Event
	err = src.each(ctx, func(it backfill.Item) error {
		ev, err := event.DecodeEvent(it.Event, "", bf.pipe.nats.subjectPrefix)
		if err != nil {
			return err
		}
		events = append(events, ev)
		if len(events) < 100 {
			return nil
		}
		err = bf.printDryRun(ctx, stdout, client, pl, base, events, &sum)
		events = events[:0]
		return err
	}, func(where string, err error) {
		sum.Scripts++
		sum.Failed++
		sum.Invalid++
		sum.Failures = append(sum.Failures, backfillFailed{Script: where, Reason: "invalid_input", Error: err.Error()})
	})
	if err == nil {
		err = bf.printDryRun(ctx, stdout, client, pl, base, events, &sum)
	}
	if err != nil {
		return err
	}
	if bf.output == "text" {
		fmt.Fprintln(stdout, "dry run: nothing was written")
	}
	return sum.print(stdout, bf.output)
}

func (bf *backfillFlags) printDryRun(ctx context.Context, stdout io.Writer, client *cfapi.Client, pl *planner.Planner, base tools.BaseState, events []*event.Event, sum *backfillSummary) error {
	previews := tools.PreviewEvents(ctx, client, pl, events, base)
	for _, pv := range previews {
		sum.Scripts++
		switch {
		case pv.Err != nil:
			sum.Failed++
			sum.Failures = append(sum.Failures, backfillFailed{Script: pv.Ref.String(), Reason: "plan", Error: pv.Err.Error()})
		case pv.Plan.NoOp():
			sum.Unchanged++
		default:
			sum.Changed++
		}
	}
	if bf.output == "json" {
		return nil // the summary line only
	}
	if err := printPlans(stdout, "text", previews); err != nil {
		var fe *failedError
		if !errors.As(err, &fe) {
			return err
		}
	}
	return nil
}

// tracker follows a run's results: totals, progress display, completion.
type tracker struct {
	run      string
	mu       sync.Mutex
	results  map[string]state.BackfillResult
	totals   backfill.Totals
	total    int
	changed  chan struct{}
	started  time.Time
	rate     func() float64 // requests per second the ETA counts on
	progress progressView
	log      *zap.Logger
}

func newTracker(run string, stderr io.Writer, mode string, rate func() float64, log *zap.Logger) *tracker {
	t := &tracker{run: run, results: map[string]state.BackfillResult{}, changed: make(chan struct{}, 1),
		started: time.Now(), rate: rate, log: log}
	t.progress = newProgressView(mode, stderr, log)
	return t
}

func (t *tracker) result(r state.BackfillResult) {
	t.mu.Lock()
	prev, had := t.results[r.Script]
	if had {
		t.totals.Add(r, &prev)
	} else {
		t.totals.Add(r, nil)
	}
	t.results[r.Script] = r
	t.mu.Unlock()
	t.update()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *tracker) done(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.results[key]
	return ok
}

func (t *tracker) setTotal(n int) {
	t.mu.Lock()
	t.total = n
	t.mu.Unlock()
	t.update()
}

// update refreshes the progress view.
func (t *tracker) update() {
	t.mu.Lock()
	st := progressState{done: t.totals.Scripts, total: t.total, totals: t.totals, elapsed: time.Since(t.started)}
	t.mu.Unlock()
	// ETA from the rate the budget allows: one read per script, plus a
	// write for the share of scripts that changed so far.
	calls := 2.0
	if st.done > 0 {
		calls = 1 + float64(st.totals.Changed)/float64(st.done)
	}
	if left := st.total - st.done; left > 0 {
		if r := t.rate(); r > 0 {
			st.eta = time.Duration(float64(left) * calls / r * float64(time.Second))
		}
	}
	t.progress.show(st)
}

// etaRate returns the requests per second a backfill's ETA counts on:
// on the shared budget, what the processes may keep up under the API's
// latest view of the user's budget (budget.Source.AllowedRate: less the
// reserve and the other tools' use) while one is live, else the budget in
// force (the --rate-limit, or in auto mode the policy it adopted); on a
// budget of this process alone, its --rate-limit.
func etaRate(lim *ratelimit.Limiter) func() float64 {
	src, ok := lim.Source().(*budget.Source)
	if !ok {
		b, w := lim.Source().Budget()
		return func() float64 { return float64(b) / w.Seconds() }
	}
	return func() float64 {
		if _, ok := src.APIView(); ok {
			return src.AllowedRate()
		}
		b, w := src.Budget()
		return float64(b) / w.Seconds()
	}
}

// wait blocks until every one of total scripts has a result.
func (t *tracker) wait(ctx context.Context, total int) error {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		t.mu.Lock()
		n := len(t.results)
		t.mu.Unlock()
		if n >= total {
			t.progress.finish()
			return nil
		}
		select {
		case <-ctx.Done():
			t.progress.finish()
			return ctx.Err()
		case <-t.changed:
		case <-tick.C:
			t.update()
		}
	}
}

func (t *tracker) summary() *backfillSummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &backfillSummary{Run: t.run, Totals: t.totals}
	for _, r := range t.results {
		if r.Outcome == "failed" {
			s.Failures = append(s.Failures, backfillFailed{Script: r.Script, Reason: string(r.Reason), Error: r.Error})
		}
	}
	sort.Slice(s.Failures, func(i, j int) bool { return s.Failures[i].Script < s.Failures[j].Script })
	return s
}
