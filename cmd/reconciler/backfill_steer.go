package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/clihelp"
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

func (sf *steerFlags) register(f *clihelp.Flags) {
	sf.nats.register(f)
	sf.log.register(f)
	what := "one JSON object"
	if sf.sub == "list" {
		what = "one JSON object per run"
	}
	f.Str(&sf.output, "output", "", "text", "output: text or json ("+what+")")
}

func (sf *steerFlags) validate(f *clihelp.Flags) error {
	if err := clihelp.ValidateAll(f, sf.nats.validate, sf.log.validate); err != nil {
		return err
	}
	if sf.output != "text" && sf.output != "json" {
		return clihelp.Usagef("--output: must be text or json, got %q", sf.output)
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
	f := clihelp.CommandFlags(cmd, a.env)
	f.Command = "backfill " + sub
	sf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runBackfillSteer(ctx, a, f, sf) })
	return cmd
}

func runBackfillSteer(ctx context.Context, a *app, f *clihelp.Flags, sf *steerFlags) error {
	if err := sf.validate(f); err != nil {
		return err
	}
	var id string
	if sf.sub == "list" {
		if err := f.NoArgs(""); err != nil {
			return err
		}
	} else {
		if len(f.Pos) != 1 {
			return clihelp.Usagef("backfill %s needs one RUN id (see `reconciler backfill list`), got %d arguments", sf.sub, len(f.Pos))
		}
		id = f.Pos[0]
		if err := state.ValidateRunID(id); err != nil {
			return clihelp.Usagef("RUN: %v", err)
		}
	}
	log := sf.log.logger(a.stderr)
	defer func() { _ = log.Sync() }()
	conn, err := connectNATS(&sf.nats, false, log)
	if err != nil {
		return err
	}
	defer conn.Close(log, 5*time.Second)
	res, err := state.Open(ctx, conn.JS, sf.nats.names())
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
		return clihelp.JSONLinesOr(a.stdout, sf.output, runs, func(w io.Writer) error { return backfill.WriteRuns(w, runs) })
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
		return clihelp.JSONOr(a.stdout, sf.output, out, func(w io.Writer) error {
			fmt.Fprintf(w, "backfill run %s cancelled: %d queued items dropped (items a runner held finish)\n\n", id, dropped)
			return backfill.WriteRunStatus(w, st)
		})
	default:
		st, err := runStatusOf(ctx, res, id, now)
		if err != nil {
			return err
		}
		return clihelp.JSONOr(a.stdout, sf.output, st, func(w io.Writer) error { return backfill.WriteRunStatus(w, st) })
	}
}

func runStatusOf(ctx context.Context, res *state.Resources, id string, now time.Time) (*backfill.RunStatus, error) {
	run, _, err := backfill.LoadRun(ctx, res, id)
	if err != nil {
		return nil, err
	}
	return run.Status(ctx, now)
}
