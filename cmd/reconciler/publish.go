package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

func cmdPublish(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, e env) error {
	var n natsFlags
	var lf logFlags
	var noValidate bool
	f := newFlagSet("publish", e, stderr)
	n.register(f)
	lf.register(f)
	f.BoolVar(&noValidate, "no-validate", false, "send lines as they are, even invalid events (to test dead-lettering)")
	f.usage("Usage: reconciler publish [flags] FILE|-\n\nPublishes events (JSON lines, docs/events.md) to <prefix>.<account>.<namespace>.<script> with Nats-Msg-Id = event id.")
	if err := f.parse(args); err != nil {
		return err
	}
	name, err := oneArg(f, "input", false)
	if err != nil {
		return err
	}
	if err := validateAll(f, &n, &lf); err != nil {
		return err
	}
	in, err := openInput(name, stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	log := lf.logger(stderr)
	conn, err := connectNATS(&n, false, log)
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
