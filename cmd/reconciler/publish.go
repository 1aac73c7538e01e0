package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

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
	f := commandFlags(cmd, a.env)
	n.register(f)
	lf.register(f)
	f.BoolVar(&noValidate, "no-validate", false, "send lines as they are, even invalid events (to test dead-lettering)")
	cmd.RunE = a.action(f, func(ctx context.Context) error {
		return runPublish(ctx, a, f, &n, &lf, noValidate)
	})
	return cmd
}

func runPublish(ctx context.Context, a *app, f *flagSet, n *natsFlags, lf *logFlags, noValidate bool) error {
	stdin, stdout, stderr := a.stdin, a.stdout, a.stderr
	name, err := oneArg(f, "input", false)
	if err != nil {
		return err
	}
	if err := validateAll(f, n, lf); err != nil {
		return err
	}
	in, err := openInput(name, stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	log := lf.logger(stderr)
	conn, err := connectNATS(n, false, log)
	if err != nil {
		return err
	}
	defer conn.close(log, 5*time.Second)
	// The stream must exist: `run` creates it; a tool never does.
	if _, err := state.Open(ctx, conn.js, n.names()); err != nil {
		return err
	}
	check := tools.CheckEvent
	if noValidate {
		check = tools.CheckSubject
	}
	sum, err := tools.Publish(ctx, conn.js, n.subjectPrefix, in, check)
	for _, msg := range sum.Errors {
		fmt.Fprintf(stderr, "%s: %s\n", inputName(name), msg)
	}
	fmt.Fprintln(stdout, publishSummary(sum))
	if err != nil {
		return fmt.Errorf("%s: %w", inputName(name), err)
	}
	if len(sum.Errors) > 0 {
		return &failedError{msg: fmt.Sprintf("%s not published", plural(len(sum.Errors), "line", "lines"))}
	}
	return nil
}

// publishSummary is the one line that says what a publish did: "published
// 5 events, 1 invalid (line 14: 3.0 MB exceeds the 1 MiB limit of an
// event)".
func publishSummary(sum tools.PublishSummary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "published %s", plural(sum.Published, "event", "events"))
	if sum.Duplicates > 0 {
		fmt.Fprintf(&b, " (%s dropped by the stream)", plural(sum.Duplicates, "duplicate", "duplicates"))
	}
	switch {
	case sum.Invalid == 1:
		fmt.Fprintf(&b, ", 1 invalid (%s)", sum.FirstInvalid)
	case sum.Invalid > 1:
		fmt.Fprintf(&b, ", %d invalid (the first: %s)", sum.Invalid, sum.FirstInvalid)
	}
	if sum.Failed > 0 {
		fmt.Fprintf(&b, ", %d not accepted by the stream", sum.Failed)
	}
	return b.String()
}

// plural is "1 event" or "2 events".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// inputName is how messages name an input: the file, or stdin for "-".
func inputName(name string) string {
	if name == "-" {
		return "stdin"
	}
	return name
}
