package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/natsconn"
	"github.com/reconciler/reconciler/internal/planner"
)

// planFlags are the flags of `reconciler plan`.
type planFlags struct {
	nats    natsFlags
	api     apiFlags
	log     logFlags
	output  string
	preview previewFlags
}

// previewFlags shape a preview (plan, backfill --dry-run): the state it
// starts from and what it shows.
type previewFlags struct {
	stored, noStored bool
	changesOnly      bool
	verbose          bool
	detailedExitcode bool
}

func (pv *previewFlags) register(f *clihelp.Flags) {
	f.BoolVar(&pv.stored, "stored", false, "start from the desired and last-applied state stored in NATS, and fail when no pipeline is reachable (default: the stored state when a pipeline is reachable over --nats-url or on --embedded-listen, else a reconciler that has applied nothing)")
	f.BoolVar(&pv.noStored, "no-stored", false, "start from a reconciler that has applied nothing, even when a pipeline is reachable")
	f.BoolVar(&pv.changesOnly, "changes-only", false, "show only the scripts with something to do")
	f.BoolVar(&pv.verbose, "verbose", false, "show the bindings left alone (created outside the reconciler) too")
	f.BoolVar(&pv.detailedExitcode, "detailed-exitcode", false, "exit 0 when nothing would change, 2 when something would, 1 on error (as terraform plan)")
}

func (pv *previewFlags) validate() error {
	if pv.stored && pv.noStored {
		return clihelp.Usagef("--stored and --no-stored: give only one of them")
	}
	return nil
}

func (pf *planFlags) register(f *clihelp.Flags) {
	pf.nats.register(f)
	pf.api.register(f)
	pf.log.register(f)
	f.Str(&pf.output, "output", "", "text", "output: text (like terraform plan) or json (one JSON object per script)")
	pf.preview.register(f)
}

func (pf *planFlags) validate(f *clihelp.Flags) error {
	if err := clihelp.ValidateAll(f, pf.nats.validate, pf.api.validate, pf.log.validate); err != nil {
		return err
	}
	if pf.output != "text" && pf.output != "json" {
		return clihelp.Usagef("--output: must be text or json, got %q", pf.output)
	}
	return pf.preview.validate()
}

func newPlanCmd(a *app) *cobra.Command {
	var pf planFlags
	cmd := &cobra.Command{
		Use:   "plan [flags] [FILE|-]",
		Short: "read live state and print what would change for events, writing nothing",
		Long: `Reads events (JSON lines, docs/events.md; stdin when no FILE is given) and
the live bindings of their scripts from the API, and prints what would change
for each script, like terraform plan. It writes nothing. Secrets show as
(sensitive). It starts from the state a reachable pipeline stored (so
ownership and secret fingerprints count), else from a reconciler that has
applied nothing, and says which.`,
		Example: `  reconciler plan events.jsonl
  reconciler plan --output json < events.jsonl
  reconciler plan --changes-only --detailed-exitcode events.jsonl   # exit 2 when something would change
  reconciler plan --no-stored events.jsonl   # as a reconciler that has applied nothing`,
	}
	f := clihelp.CommandFlags(cmd, a.env)
	pf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runPlan(ctx, a, f, &pf) })
	return cmd
}

func runPlan(ctx context.Context, a *app, f *clihelp.Flags, pf *planFlags) error {
	stdin, stdout, stderr, e := a.stdin, a.stdout, a.stderr, a.env
	name, err := clihelp.OneArg(f, "input", true)
	if err != nil {
		return err
	}
	if err := pf.validate(f); err != nil {
		return err
	}
	creds, err := credentials(e, pf.api.baseURL)
	if err != nil {
		return err
	}
	events, err := readEventsFile(name, stdin, pf.nats.subjectPrefix)
	if err != nil {
		return err
	}
	log := pf.log.logger(stderr)
	client, conn, closeClient, err := toolClient(ctx, &pf.nats, &pf.api, creds, log)
	if err != nil {
		return err
	}
	defer closeClient()
	defer watchBudget(ctx, "plan", client.Limiter(), stderr)()
	base, pl, err := pf.preview.baseState(ctx, &pf.nats, conn, e, log)
	if err != nil {
		return err
	}
	out := pf.preview.printer(stdout, pf.output, base, false)
	if err := out.Print(tools.PreviewEvents(ctx, client, pl, events, base.State)); err != nil {
		return err
	}
	return pf.preview.exit(out)
}

// printer returns the printer of previews from base; summaryOnly prints
// nothing per script (backfill --dry-run --output json). A text output
// starts with the state the plans start from.
func (pv *previewFlags) printer(w io.Writer, output string, base tools.PreviewBase, summaryOnly bool) *tools.PlanPrinter {
	if output == "text" {
		fmt.Fprintf(w, "Planning from %s.\n\n", base.Text)
	}
	return &tools.PlanPrinter{W: w, JSON: output == "json", Stored: base.Stored, ChangesOnly: pv.changesOnly, LeftAlone: pv.verbose,
		SummaryOnly: summaryOnly}
}

// exit returns the outcome of a preview: a failure (exit 1) when a script
// could not be planned, else with --detailed-exitcode exit 2 when
// something would change.
func (pv *previewFlags) exit(p *tools.PlanPrinter) error {
	switch {
	case p.Failed > 0:
		return &failedError{msg: fmt.Sprintf("%d scripts could not be planned", p.Failed)}
	case p.Changes > 0 && pv.detailedExitcode:
		return errChangesPending
	}
	return nil
}

// readEventsFile reads and validates the events of a file or stdin ("-").
func readEventsFile(name string, stdin io.Reader, prefix string) ([]*event.Event, error) {
	in, err := clihelp.OpenInput(name, stdin)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	events, err := tools.ReadEvents(in, prefix)
	if err != nil {
		return nil, clihelp.Usagef("%s: %v", name, err)
	}
	return events, nil
}

// baseState returns the state plans start from and a planner
// (tools.ChooseBase): the stored state of the pipeline behind conn (nil =
// none reachable) unless --no-stored, else a fresh one.
func (pv *previewFlags) baseState(ctx context.Context, n *natsFlags, conn *natsconn.Conn, e clihelp.Env, log *zap.Logger) (tools.PreviewBase, *planner.Planner, error) {
	c := tools.BaseChoice{Stored: pv.stored, NoStored: pv.noStored, Names: n.names(), EmbeddedListen: n.embeddedListen, Log: log}
	if conn != nil {
		c.JS, c.URL = conn.JS, redactURL(conn.URL)
		c.Key = func(ctx context.Context) ([]byte, error) { return fingerprintKey(ctx, conn.JS, e, 1, false) }
	}
	return tools.ChooseBase(ctx, c)
}
