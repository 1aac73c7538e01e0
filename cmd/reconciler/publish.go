package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

func newPublishCmd(a *app) *cobra.Command {
	var n natsFlags
	var lf logFlags
	var noValidate bool
	cmd := &cobra.Command{
		Use:   "publish [flags] FILE|-",
		Short: "publish events (JSON lines) to the stream, Nats-Msg-Id = event id",
		Long: `Publishes events (JSON lines, docs/events.md) to <prefix>.<account>.<namespace>.<script>
with Nats-Msg-Id = event id, so the stream drops a duplicate. The stream must
exist: 'reconciler run' creates it. An invalid line is reported with its line
number and the lines after it are still published.`,
		Example: `  reconciler publish events.jsonl
  producer | reconciler publish - --nats-url nats://nats:4222`,
	}
	f := clihelp.CommandFlags(cmd, a.env)
	n.register(f)
	lf.register(f)
	f.BoolVar(&noValidate, "no-validate", false, "send lines as they are, even invalid events (to test dead-lettering)")
	cmd.RunE = a.action(f, func(ctx context.Context) error {
		return runPublish(ctx, a, f, &n, &lf, noValidate)
	})
	return cmd
}

func runPublish(ctx context.Context, a *app, f *clihelp.Flags, n *natsFlags, lf *logFlags, noValidate bool) error {
	stdin, stdout, stderr := a.stdin, a.stdout, a.stderr
	name, err := clihelp.OneArg(f, "input", false)
	if err != nil {
		return err
	}
	if err := clihelp.ValidateAll(f, n.validate, lf.validate); err != nil {
		return err
	}
	in, err := clihelp.OpenInput(name, stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	log := lf.logger(stderr)
	conn, err := connectNATS(n, false, log)
	if err != nil {
		return err
	}
	defer conn.Close(log, 5*time.Second)
	// The stream must exist: `run` creates it; a tool never does.
	if _, err := state.Open(ctx, conn.JS, n.names()); err != nil {
		return err
	}
	check := tools.CheckEvent
	if noValidate {
		check = tools.CheckSubject
	}
	sum, err := tools.Publish(ctx, conn.JS, n.subjectPrefix, in, check)
	for _, msg := range sum.Errors {
		fmt.Fprintf(stderr, "%s: %s\n", clihelp.InputName(name), msg)
	}
	fmt.Fprintln(stdout, sum.String())
	if err != nil {
		return fmt.Errorf("%s: %w", clihelp.InputName(name), err)
	}
	if len(sum.Errors) > 0 {
		return &failedError{msg: fmt.Sprintf("%s not published", tools.Plural(len(sum.Errors), "line", "lines"))}
	}
	return nil
}
