package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/backfill"
	"github.com/reconciler/reconciler/internal/natsconn"
	"github.com/reconciler/reconciler/internal/process"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/progress"
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
	preview        previewFlags // with --dry-run
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
func (s *stringList) Type() string       { return "stringArray" }

func (bf *backfillFlags) register(f *clihelp.Flags) {
	bf.pipe.registerPipeline(f)
	f.Str(&bf.from, "from", "", "", "events to apply, one per script (JSON lines as in docs/events.md; - for stdin)")
	f.Str(&bf.namespace, "dispatch-namespace", "", "", "apply --patch to every script of this dispatch namespace")
	f.Alias("namespace", "dispatch-namespace")
	f.Str(&bf.patchFile, "patch", "", "", "with --dispatch-namespace: a JSON object with \"upsert\" and/or \"remove\", as in a patch event")
	f.Var(&bf.tags, "tag", "with --dispatch-namespace: only scripts with this tag (NAME or NAME:yes includes, NAME:no excludes; repeatable)")
	f.Str(&bf.account, "account", "CLOUDFLARE_ACCOUNT_ID", "", "account of --dispatch-namespace")
	f.Str(&bf.runID, "run-id", "", "", "name of the run, to resume it (default: derived from the input)")
	f.Str(&bf.output, "output", "", "text", "summary: text or json (the last line of stdout is one JSON object)")
	f.BoolVar(&bf.dryRun, "dry-run", false, "read live state and print each plan and a summary; write nothing")
	f.BoolVar(&bf.skipUnmodified, "skip-unmodified", false, "with --dispatch-namespace: do not read a script whose listed modified_on equals the one recorded when a read last found it converged, and whose desired state is applied (see README)")
	f.BoolVar(&bf.retryFailed, "retry-failed", true, "when resuming a run, queue again the scripts whose result failed (--retry-failed=false keeps their failures)")
	f.Str(&bf.progress, "progress", "", "auto", "progress: auto (a bar on a terminal, log lines otherwise), bar, log or none")
	bf.preview.register(f)
}

func (bf *backfillFlags) validate(f *clihelp.Flags) error {
	if err := bf.pipe.validate(f); err != nil {
		return err
	}
	switch {
	case bf.from == "" && bf.namespace == "":
		return clihelp.Usagef("give --from FILE, or --dispatch-namespace NS with --patch FILE")
	case bf.from != "" && (bf.namespace != "" || bf.patchFile != "" || len(bf.tags) > 0):
		return clihelp.Usagef("--from cannot be combined with --dispatch-namespace, --patch or --tag")
	case bf.namespace != "" && bf.patchFile == "":
		return clihelp.Usagef("--dispatch-namespace needs --patch FILE (the change to apply to every script)")
	case bf.namespace != "" && bf.account == "":
		return clihelp.Usagef("%s: needed with --dispatch-namespace", f.Label("account"))
	case bf.skipUnmodified && bf.namespace == "":
		return clihelp.Usagef("--skip-unmodified needs --dispatch-namespace (it compares the listing's modified_on)")
	case bf.output != "text" && bf.output != "json":
		return clihelp.Usagef("--output: must be text or json, got %q", bf.output)
	}
	if bf.namespace != "" {
		if err := cfapi.ValidateScriptName(bf.namespace); err != nil {
			return clihelp.Usagef("--dispatch-namespace: %v", err)
		}
		if err := cfapi.ValidateAccountID(bf.account); err != nil {
			return clihelp.Usagef("%s: %v", f.Label("account"), err)
		}
	}
	if bf.runID != "" {
		if err := state.ValidateRunID(bf.runID); err != nil {
			return clihelp.Usagef("--run-id: %v", err)
		}
	}
	switch bf.progress {
	case "auto", "bar", "log", "none":
	default:
		return clihelp.Usagef("--progress: must be auto, bar, log or none, got %q", bf.progress)
	}
	return bf.preview.validate()
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
	f := clihelp.CommandFlags(cmd, a.env)
	bf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runBackfill(ctx, a, f, &bf) })
	cmd.AddCommand(newBackfillSteerCmds(a)...) // backfill_steer.go
	return cmd
}

func runBackfill(ctx context.Context, a *app, f *clihelp.Flags, bf *backfillFlags) error {
	stdin, stdout, stderr, e := a.stdin, a.stdout, a.stderr, a.env
	if err := f.NoArgs("use --from FILE"); err != nil {
		return err
	}
	if err := bf.validate(f); err != nil {
		return err
	}
	if !bf.dryRun && (bf.preview != previewFlags{}) {
		return clihelp.Usagef("--stored, --no-stored, --changes-only, --verbose and --detailed-exitcode need --dry-run")
	}
	creds, err := credentials(e, bf.pipe.api.baseURL)
	if err != nil {
		return err
	}
	con := progress.NewConsole(stderr, nil)
	log := bf.pipe.log.logger(con)
	defer func() { _ = log.Sync() }()
	if bf.dryRun {
		return bf.dryRunPlans(ctx, stdout, stderr, stdin, creds, e, log)
	}
	conn, stopPipeline, err := bf.pipeline(ctx, creds, e, log)
	if err != nil {
		return err
	}
	defer stopPipeline()
	lim, closeLim, err := bf.pipe.api.spec().Limiter(ctx, creds, conn.JS, process.Shared, 1, log)
	if err != nil {
		return err
	}
	defer closeLim()
	client, err := bf.pipe.api.spec().Client(creds, lim, cfapi.Hooks{}, time.Minute)
	if err != nil {
		return err
	}
	src, err := bf.source(stdin, client, backfill.KnownScriptsIn(conn.JS, bf.pipe.nats.names()), log)
	if err != nil {
		return err
	}
	sum, err := bf.execute(ctx, conn, con, src, lim, log)
	if err != nil {
		return err
	}
	return printSummary(stdout, bf.output, sum)
}

// execute runs the backfill of src on the pipeline behind conn, its
// progress and budget notices on con, its ETA from the budget of lim.
func (bf *backfillFlags) execute(ctx context.Context, conn *natsconn.Conn, con *progress.Console, src *backfill.Source, lim *ratelimit.Limiter, log *zap.Logger) (*backfill.Summary, error) {
	defer watchBudget(ctx, "backfill", lim, con)()
	res, err := state.Open(ctx, conn.JS, bf.pipe.nats.names())
	if err != nil {
		return nil, err
	}
	return backfill.Execute(ctx, res, backfill.Options{Source: src, SkipUnmodified: bf.skipUnmodified, RetryFailed: bf.retryFailed,
		View: progress.New(bf.progress, con, log, nil), ETA: progress.BudgetETA(progress.LimiterBudget(lim), nil), Log: log})
}

// source builds the run's items from --from or from
// --dispatch-namespace/--patch; known finds a namespace's scripts when the
// API does not list them (nil: no pipeline state reachable), and log gets
// the one warning of that fallback. The run id is --run-id, else the one
// derived from the input.
func (bf *backfillFlags) source(stdin io.Reader, client *cfapi.Client, known backfill.KnownScriptsFunc, log *zap.Logger) (*backfill.Source, error) {
	src, err := bf.sourceOf(stdin, client, known, log)
	if err == nil && bf.runID != "" {
		src.RunID = bf.runID
	}
	return src, err
}

func (bf *backfillFlags) sourceOf(stdin io.Reader, client *cfapi.Client, known backfill.KnownScriptsFunc, log *zap.Logger) (*backfill.Source, error) {
	if bf.from != "" {
		in, err := clihelp.OpenInput(bf.from, stdin)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(in)
		in.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", bf.from, err)
		}
		src := backfill.EventsSource(clihelp.InputName(bf.from), data, bf.pipe.nats.subjectPrefix)
		src.Describe = "file " + bf.from
		return src, nil
	}
	patch, err := os.ReadFile(bf.patchFile)
	if err != nil {
		return nil, clihelp.Usagef("--patch: %v", err)
	}
	src, err := backfill.NamespaceSource(backfill.Namespace{Account: bf.account, Namespace: bf.namespace, Tags: bf.tags, Patch: patch,
		SubjectPrefix: bf.pipe.nats.subjectPrefix, SkipUnmodified: bf.skipUnmodified, Lister: client, Known: known, Log: log})
	if err != nil {
		return nil, clihelp.Usagef("--patch %s: %v", bf.patchFile, err)
	}
	return src, nil
}

// printSummary writes the summary (backfill.WriteSummary) and returns
// the run's failure (exit 1) when a script failed.
func printSummary(w io.Writer, output string, s *backfill.Summary) error {
	if err := backfill.WriteSummary(w, output == "json", s); err != nil {
		return err
	}
	if msg := s.FailureText(); msg != "" {
		return &failedError{msg: msg}
	}
	return nil
}

// pipeline connects to the pipeline that will do the work: --nats-url,
// or the embedded server of a running `reconciler run`; when neither is
// there (no --nats-url and nothing on --embedded-listen) it runs the
// pipeline in this process until the returned stop is called.
func (bf *backfillFlags) pipeline(ctx context.Context, creds cfapi.Credentials, e clihelp.Env, log *zap.Logger) (*natsconn.Conn, func(), error) {
	conn, err := connectNATS(&bf.pipe.nats, false, log)
	if err == nil {
		return conn, func() { conn.Close(log, 5*time.Second) }, nil
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
		conn.Close(log, time.Second)
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(runCtx) }()
	return conn, func() {
		cancel()
		<-done
		conn.Close(log, 5*time.Second)
	}, nil
}

// dryRunPlans prints the plan of every script and a summary; it writes
// nothing anywhere. It plans from the stored state of a reachable
// pipeline, or as a reconciler that has applied nothing (previewFlags).
func (bf *backfillFlags) dryRunPlans(ctx context.Context, stdout, stderr io.Writer, stdin io.Reader, creds cfapi.Credentials, e clihelp.Env, log *zap.Logger) error {
	client, conn, closeClient, err := toolClient(ctx, &bf.pipe.nats, &bf.pipe.api, creds, log)
	if err != nil {
		return err
	}
	defer closeClient()
	defer watchBudget(ctx, "backfill", client.Limiter(), stderr)()
	var js jetstream.JetStream
	if conn != nil {
		js = conn.JS
	}
	src, err := bf.source(stdin, client, backfill.KnownScriptsIn(js, bf.pipe.nats.names()), log)
	if err != nil {
		return err
	}
	base, pl, err := bf.preview.baseState(ctx, &bf.pipe.nats, conn, e, log)
	if err != nil {
		return err
	}
	out := bf.preview.printer(stdout, bf.output, base, bf.output == "json")
	sum, err := backfill.DryRun(ctx, src, bf.pipe.nats.subjectPrefix, func(ctx context.Context, events []*event.Event) []tools.Preview {
		return tools.PreviewEvents(ctx, client, pl, events, base.State)
	}, out.Print)
	if err != nil {
		return err
	}
	if bf.output == "text" {
		fmt.Fprintln(stdout, "dry run: nothing was written")
	}
	if err := printSummary(stdout, bf.output, sum); err != nil {
		return err
	}
	return bf.preview.exit(out)
}
