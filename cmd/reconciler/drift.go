package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/clihelp"

	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// exitDrift is the exit code of `reconciler drift` when it found drift
// (like terraform plan --detailed-exitcode).
const exitDrift = 2

// driftFoundError is drift found: exit code exitDrift, the report already
// printed.
type driftFoundError struct{ drifted int }

func (e *driftFoundError) Error() string {
	return fmt.Sprintf("%d scripts drifted", e.drifted)
}

// driftFlags are the flags of `reconciler drift`.
type driftFlags struct {
	nats  natsFlags
	api   apiFlags
	log   logFlags
	scope scopeFlags
}

func (df *driftFlags) register(f *clihelp.Flags) {
	df.nats.register(f)
	df.api.register(f)
	df.log.register(f)
	df.scope.register(f)
}

func newDriftCmd(a *app) *cobra.Command {
	var df driftFlags
	cmd := &cobra.Command{
		Use:   "drift (--dispatch-namespace NS | SCRIPT...) [flags]",
		Short: "list the scripts whose live bindings differ from what the reconciler applied or wants",
		Long: `Lists the scripts the reconciler manages (in --dispatch-namespace of
--account, or the SCRIPTs named) whose live bindings differ from what it last
applied or wants now, with the bindings that differ and the write that would
repair each. It writes nothing. Its cost is the namespace's list pages plus
one read, from the shared budget, of each script whose modified_on moved
since a read found it converged (or that was never found so); without a
listing (ordinary Workers) every managed script is read.

Exit codes: 0 no drift; 2 drift found (a script drifted, has a desired state
not applied yet, or is gone from its namespace); 1 an error, or a script
that could not be read.`,
		Example: `  reconciler drift --dispatch-namespace customers
  reconciler drift --dispatch-namespace customers tenant-0001 tenant-0002 --output json
  reconciler drift --dispatch-namespace customers; [ $? -eq 2 ] && echo "drift found"`,
	}
	f := clihelp.CommandFlags(cmd, a.env)
	df.register(f)
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runDrift(ctx, a, f, &df) })
	return cmd
}

func runDrift(ctx context.Context, a *app, f *clihelp.Flags, df *driftFlags) error {
	if err := clihelp.ValidateAll(f, df.nats.validate, df.api.validate, df.log.validate, df.scope.validate); err != nil {
		return err
	}
	scope := tools.DriftScope{AccountID: df.scope.account, Namespace: df.scope.namespace, Scripts: f.Pos}
	if len(scope.Scripts) == 0 && scope.Namespace == "" {
		return clihelp.Usagef("give --dispatch-namespace NS (every managed script of it), or the SCRIPTs to check")
	}
	for _, s := range scope.Scripts {
		if err := cfapi.ValidateScriptName(s); err != nil {
			return clihelp.Usagef("SCRIPT %q: %v (a script name of --dispatch-namespace)", s, err)
		}
	}
	log := df.log.logger(a.stderr)
	defer func() { _ = log.Sync() }()
	s, err := openOps(ctx, "drift", a.stderr, &df.nats, &df.api, a.env, true, log)
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := tools.Drift(ctx, s.Res, s.Client, s.Planner, scope)
	if err != nil {
		return err
	}
	if err := clihelp.JSONOr(a.stdout, df.scope.output, rep, func(w io.Writer) error { return tools.WriteDrift(w, rep) }); err != nil {
		return err
	}
	switch {
	case rep.Errors > 0:
		return &failedError{msg: fmt.Sprintf("%d scripts could not be checked (see the report)", rep.Errors)}
	case rep.Drifted > 0:
		return &driftFoundError{drifted: rep.Drifted}
	}
	return nil
}
