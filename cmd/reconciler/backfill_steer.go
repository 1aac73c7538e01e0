package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/jobs/backfill"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// steerFlags are the flags of `reconciler backfill list|status|cancel`:
// they steer runs from any machine on the NATS.
type steerFlags struct {
	sub    string
	nats   natsFlags
	log    logFlags
	output string
}

func (sf *steerFlags) register(f *flagSet) {
	sf.nats.register(f)
	sf.log.register(f)
	what := "one JSON object"
	if sf.sub == "list" {
		what = "one JSON object per run"
	}
	f.str(&sf.output, "output", "", "text", "output: text or json ("+what+")")
}

func (sf *steerFlags) validate(f *flagSet) error {
	if err := validateAll(f, &sf.nats, &sf.log); err != nil {
		return err
	}
	if sf.output != "text" && sf.output != "json" {
		return usagef("--output: must be text or json, got %q", sf.output)
	}
	return nil
}

// newBackfillSteerCmds returns the subcommands of `reconciler backfill`
// that steer runs.
func newBackfillSteerCmds(a *app) []*cobra.Command {
	return []*cobra.Command{
		newBackfillSteerCmd(a, "list", "list [flags]", "list the backfill runs, newest first, with their progress",
			"  reconciler backfill list\n  reconciler backfill list --output json"),
		newBackfillSteerCmd(a, "status", "status RUN [flags]", "show a run's progress, ETA and failures, from any machine on the NATS",
			"  reconciler backfill status bf-3f2a9c01d2e4\n  reconciler backfill status nightly --output json"),
		newBackfillSteerCmd(a, "cancel", "cancel RUN [flags]", "cancel a run: drop its queued items (items under way finish) and refuse its resume",
			"  reconciler backfill cancel bf-3f2a9c01d2e4"),
	}
}

func newBackfillSteerCmd(a *app, sub, use, short, example string) *cobra.Command {
	sf := &steerFlags{sub: sub}
	cmd := &cobra.Command{Use: use, Short: short, Example: example}
	f := commandFlags(cmd, a.env)
	f.command = "backfill " + sub
	sf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runBackfillSteer(ctx, a, f, sf) })
	return cmd
}

func runBackfillSteer(ctx context.Context, a *app, f *flagSet, sf *steerFlags) error {
	if err := sf.validate(f); err != nil {
		return err
	}
	var id string
	if sf.sub == "list" {
		if err := f.noArgs(""); err != nil {
			return err
		}
	} else {
		if len(f.pos) != 1 {
			return usagef("backfill %s needs one RUN id (see `reconciler backfill list`), got %d arguments", sf.sub, len(f.pos))
		}
		id = f.pos[0]
		if err := state.ValidateRunID(id); err != nil {
			return usagef("RUN: %v", err)
		}
	}
	log := sf.log.logger(a.stderr)
	defer func() { _ = log.Sync() }()
	conn, err := connectNATS(&sf.nats, false, log)
	if err != nil {
		return err
	}
	defer conn.close(log, 5*time.Second)
	res, err := state.Open(ctx, conn.js, sf.nats.names())
	if err != nil {
		return err
	}
	now := time.Now()
	switch sf.sub {
	case "list":
		runs, err := backfill.List(ctx, res, now)
		if err != nil {
			return err
		}
		return printRuns(a.stdout, sf.output, runs)
	case "cancel":
		dropped, err := backfill.Cancel(ctx, res, id, now)
		if err != nil {
			return err
		}
		st, err := runStatusOf(ctx, res, id, time.Now())
		if err != nil {
			return err
		}
		out := struct {
			Dropped uint64 `json:"dropped"`
			*backfill.RunStatus
		}{dropped, st}
		return printJSONOr(a.stdout, sf.output, out, func(w io.Writer) error {
			fmt.Fprintf(w, "backfill run %s cancelled: %d queued items dropped (items a runner held finish)\n\n", id, dropped)
			return writeRunStatus(w, st)
		})
	default:
		st, err := runStatusOf(ctx, res, id, now)
		if err != nil {
			return err
		}
		return printJSONOr(a.stdout, sf.output, st, func(w io.Writer) error { return writeRunStatus(w, st) })
	}
}

func runStatusOf(ctx context.Context, res *state.Resources, id string, now time.Time) (*backfill.RunStatus, error) {
	run, _, err := backfill.LoadRun(ctx, res, id)
	if err != nil {
		return nil, err
	}
	return run.Status(ctx, now)
}

// printRuns lists runs as a table or JSON lines.
func printRuns(w io.Writer, output string, runs []*backfill.RunStatus) error {
	if output == "json" {
		for _, r := range runs {
			line, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintln(w, string(line))
		}
		return nil
	}
	fmt.Fprintf(w, "%-24s %-9s %-13s %7s %9s %6s %6s %-20s %s\n", "RUN", "STATE", "DONE", "CHANGED", "UNCHANGED", "FAILED", "QUEUED", "CREATED", "SOURCE")
	for _, r := range runs {
		fmt.Fprintf(w, "%-24s %-9s %-13s %7d %9d %6d %6d %-20s %s\n", r.Record.ID, r.State, doneText(r), r.Changed, r.Unchanged, r.Failed,
			r.Queued, r.Record.CreatedAt.UTC().Format(time.RFC3339), r.Record.Source)
	}
	fmt.Fprintf(w, "%d backfill runs\n", len(runs))
	return nil
}

// doneText is "12/40", or "12/?" while the total is not known.
func doneText(r *backfill.RunStatus) string {
	if r.Record.Total == 0 && r.State == backfill.StateRunning {
		return fmt.Sprintf("%d/?", r.Scripts)
	}
	return fmt.Sprintf("%d/%d", r.Scripts, r.Record.Total)
}

// writeRunStatus renders one run's progress for people.
func writeRunStatus(w io.Writer, st *backfill.RunStatus) error {
	var b strings.Builder
	r := st.Record
	fmt.Fprintf(&b, "backfill run %s: %s\n", r.ID, st.State)
	fmt.Fprintf(&b, "  source     %s\n", r.Source)
	fmt.Fprintf(&b, "  created    %s\n", r.CreatedAt.UTC().Format(time.RFC3339))
	if r.FinishedAt != nil {
		fmt.Fprintf(&b, "  finished   %s\n", r.FinishedAt.UTC().Format(time.RFC3339))
	}
	if r.CancelledAt != nil {
		fmt.Fprintf(&b, "  cancelled  %s\n", r.CancelledAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "  progress   %s scripts with a result, %d queued\n", doneText(st), st.Queued)
	fmt.Fprintf(&b, "  changed    %d\n  unchanged  %d\n  failed     %d\n", st.Changed, st.Unchanged, st.Failed)
	if st.Rate > 0 {
		fmt.Fprintf(&b, "  rate       %.1f scripts/s\n", st.Rate)
	}
	if st.ETA > 0 {
		fmt.Fprintf(&b, "  eta        %s\n", st.ETA.Round(time.Second))
	}
	for _, f := range st.Failures {
		fmt.Fprintf(&b, "  failed: %s  %s  %s\n", f.Script, f.Reason, f.Error)
	}
	if st.State != backfill.StateCancelled && st.Failed > 0 {
		fmt.Fprintf(&b, "  (start the run again with --run-id %s to retry the failed scripts)\n", r.ID)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// retry takes back the failed result of key for a resumed run that
// retries it, and returns it (nil when key has no failed result): the run
// then waits for the script's new result.
func (t *tracker) retry(key string) *state.BackfillResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.results[key]
	if !ok || r.Outcome != state.ResultFailed {
		return nil
	}
	delete(t.results, key)
	t.totals.Scripts--
	t.totals.Failed--
	return &r
}

// untilCancelled returns a context that ends, with the cause
// backfill.ErrCancelled, when run id is cancelled (`backfill cancel` on
// any machine), so that the process that started the run stops waiting
// for the results of the items the cancel dropped. stop releases the
// watch.
func untilCancelled(ctx context.Context, res *state.Resources, id string) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	w, err := res.Runs.Watch(wctx, id)
	if err != nil {
		return wctx, func() { cancel(nil) } // the wait goes on as before
	}
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var rec state.BackfillRun
			if json.Unmarshal(e.Value(), &rec) == nil && rec.CancelledAt != nil {
				cancel(fmt.Errorf("backfill run %s: %w on %s: the items still queued were dropped", id, backfill.ErrCancelled,
					rec.CancelledAt.UTC().Format(time.RFC3339)))
				return
			}
		}
	}()
	return wctx, func() { _ = w.Stop(); cancel(nil) }
}
