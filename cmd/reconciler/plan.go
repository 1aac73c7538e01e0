package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/planner"
)

// planFlags are the flags of `reconciler plan`.
type planFlags struct {
	nats   natsFlags
	api    apiFlags
	log    logFlags
	output string
	stored bool
}

func (pf *planFlags) register(f *flagSet) {
	pf.nats.register(f)
	pf.api.register(f)
	pf.log.register(f)
	f.str(&pf.output, "output", "", "text", "output: text (like terraform plan) or json (one JSON object per script)")
	f.BoolVar(&pf.stored, "stored", false, "start from the desired and last-applied state stored in NATS (--nats-url, or a running `reconciler run`), so ownership and secret fingerprints count; default: a reconciler that has applied nothing")
}

func (pf *planFlags) validate(f *flagSet) error {
	if err := validateAll(f, &pf.nats, &pf.api, &pf.log); err != nil {
		return err
	}
	if pf.output != "text" && pf.output != "json" {
		return usagef("--output: must be text or json, got %q", pf.output)
	}
	return nil
}

func newPlanCmd(a *app) *cobra.Command {
	var pf planFlags
	cmd := &cobra.Command{
		Use:   "plan [flags] [FILE|-]",
		Short: "read live state and print what would change for events, writing nothing",
		Long: `Reads events (JSON lines, docs/events.md; stdin when no FILE is given) and
the live bindings of their scripts from the API, and prints what would change
for each script, like terraform plan. It writes nothing. Secrets show as
(sensitive).`,
		Example: `  reconciler plan events.jsonl
  reconciler plan --output json < events.jsonl
  reconciler plan --stored events.jsonl   # from the state a running 'reconciler run' stored`,
	}
	f := commandFlags(cmd, a.env)
	pf.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runPlan(ctx, a, f, &pf) })
	return cmd
}

func runPlan(ctx context.Context, a *app, f *flagSet, pf *planFlags) error {
	stdin, stdout, stderr, e := a.stdin, a.stdout, a.stderr, a.env
	name, err := oneArg(f, "input", true)
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
	base, pl, err := pf.baseState(ctx, conn, e)
	if err != nil {
		return err
	}
	return printPlans(stdout, pf.output, tools.PreviewEvents(ctx, client, pl, events, base))
}

// readEventsFile reads and validates the events of a file or stdin ("-").
func readEventsFile(name string, stdin io.Reader, prefix string) ([]*event.Event, error) {
	in, err := openInput(name, stdin)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	events, err := tools.ReadEvents(in, prefix)
	if err != nil {
		return nil, usagef("%s: %v", name, err)
	}
	return events, nil
}

// baseState returns the state plans start from and a planner: with
// --stored, the stored state and fingerprint key of the pipeline behind
// conn (read only); otherwise a fresh state with a throwaway key.
func (pf *planFlags) baseState(ctx context.Context, conn *natsConn, e env) (tools.BaseState, *planner.Planner, error) {
	fpKey := make([]byte, 32)
	_, _ = rand.Read(fpKey)
	base := tools.BaseState(tools.FreshState)
	if pf.stored {
		if conn == nil {
			return nil, nil, fmt.Errorf("--stored: no running reconciler reachable at %s: pass --nats-url, or start `reconciler run`", pf.nats.embeddedListen)
		}
		var err error
		if base, err = tools.StoredState(ctx, conn.js, pf.nats.names()); err == nil {
			fpKey, err = fingerprintKey(ctx, conn.js, e, 1, false)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	pl, err := planner.New(planner.Options{FingerprintKey: fpKey})
	if err != nil {
		return nil, nil, err
	}
	return base, pl, nil
}

// printPlans prints previews as text or JSON lines; it fails (exit 1)
// when a script could not be planned.
func printPlans(w io.Writer, output string, previews []tools.Preview) error {
	failed := 0
	for _, pv := range previews {
		if pv.Err != nil {
			failed++
		}
		if output == "json" {
			obj := map[string]any{"script": pv.Ref, "events": pv.EventIDs}
			if pv.Err != nil {
				obj["error"] = pv.Err.Error()
			} else {
				obj["plan"] = pv.Plan
			}
			line, err := json.Marshal(obj)
			if err != nil {
				return err
			}
			fmt.Fprintln(w, string(line))
			continue
		}
		fmt.Fprintf(w, "# %s (events: %d)\n", pv.Ref, len(pv.EventIDs))
		if pv.Err != nil {
			fmt.Fprintf(w, "error: %v\n\n", pv.Err)
			continue
		}
		if err := pv.Plan.Render(w); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if failed > 0 {
		return &failedError{msg: fmt.Sprintf("%d scripts could not be planned", failed)}
	}
	return nil
}
