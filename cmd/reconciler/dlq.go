package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/jobs/tools"
)

// dlqFlags are the flags of `reconciler dlq list|replay`.
type dlqFlags struct {
	sub     string
	nats    natsFlags
	log     logFlags
	script  string
	reason  string
	output  string
	limit   int
	seqs    string
	keep    bool
	filter  string
	wantSeq map[uint64]bool
}

// register registers the flags both subcommands share: which dead
// letters.
func (df *dlqFlags) register(f *clihelp.Flags) {
	df.nats.register(f)
	df.log.register(f)
	f.Str(&df.script, "script", "", "", "only dead letters of this script: ACCOUNT.NAMESPACE.SCRIPT (namespace _ for ordinary Workers; * wildcards allowed)")
	f.Str(&df.reason, "reason", "", "", "only dead letters with this reason")
	f.IntVar(&df.limit, "limit", 0, "at most this many dead letters (0 = all)")
}

// registerList registers the flags of dlq list alone.
func (df *dlqFlags) registerList(f *clihelp.Flags) {
	f.Str(&df.output, "output", "", "text", "output: text or json (JSON lines)")
}

// registerReplay registers the flags of dlq replay alone.
func (df *dlqFlags) registerReplay(f *clihelp.Flags) {
	f.Str(&df.seqs, "seq", "", "", "only these dead-letter sequence numbers, comma-separated")
	f.BoolVar(&df.keep, "keep", false, "keep replayed dead letters in the stream (default: delete them once republished)")
}

func (df *dlqFlags) validate(f *clihelp.Flags) error {
	if err := f.NoArgs(""); err != nil {
		return err
	}
	if err := clihelp.ValidateAll(f, df.nats.validate, df.log.validate); err != nil {
		return err
	}
	if df.output != "" && df.output != "text" && df.output != "json" {
		return clihelp.Usagef("--output: must be text or json, got %q", df.output)
	}
	if df.limit < 0 {
		return clihelp.Usagef("--limit: must not be negative")
	}
	if df.script != "" {
		if strings.Count(df.script, ".") != 2 {
			return clihelp.Usagef("--script: want ACCOUNT.NAMESPACE.SCRIPT, got %q", df.script)
		}
		df.filter = df.nats.names().DLQPrefix + "." + df.script
	}
	df.wantSeq = map[uint64]bool{}
	if df.seqs != "" {
		for _, s := range strings.Split(df.seqs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return clihelp.Usagef("--seq: %q is not a sequence number", s)
			}
			df.wantSeq[n] = true
		}
	}
	return nil
}

func newDLQCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq list|replay [flags]",
		Short: "list dead letters, or republish them after a fix",
		Long: `Dead letters are the events the pipeline gave up on (invalid, or failed
--max-deliver times), kept in the DLQ stream with the reason and the error.
'dlq list' shows them; 'dlq replay' republishes them after a fix.`,
		SuggestionsMinimumDistance: 2,
		Example: `  reconciler dlq list
  reconciler dlq list --reason invalid_json --output json
  reconciler dlq replay --seq 12,13`,
		RunE: func(cmd *cobra.Command, args []string) error {
			a.ran = true
			if len(args) == 0 {
				return clihelp.Usagef("dlq needs a subcommand: list or replay")
			}
			hint := ""
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				hint = fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
			}
			return clihelp.Usagef("dlq: unknown subcommand %q%s; dlq needs a subcommand: list or replay", args[0], hint)
		},
	}
	cmd.AddCommand(newDLQSubCmd(a, "list"), newDLQSubCmd(a, "replay"))
	return cmd
}

func newDLQSubCmd(a *app, sub string) *cobra.Command {
	df := &dlqFlags{sub: sub}
	cmd := &cobra.Command{Use: sub + " [flags]"}
	f := clihelp.CommandFlags(cmd, a.env)
	f.Command = "dlq " + sub
	df.register(f)
	if sub == "list" {
		cmd.Short = "list dead letters"
		cmd.Example = "  reconciler dlq list\n  reconciler dlq list --script '*.customers.tenant-0001' --output json"
		df.registerList(f)
	} else {
		cmd.Short = "republish dead letters after a fix (and delete them, unless --keep)"
		cmd.Example = "  reconciler dlq replay --reason api_rejected\n  reconciler dlq replay --seq 12,13 --keep"
		df.registerReplay(f)
	}
	cmd.RunE = a.action(f, func(ctx context.Context) error { return runDLQ(ctx, a, f, df) })
	return cmd
}

func runDLQ(ctx context.Context, a *app, f *clihelp.Flags, df *dlqFlags) error {
	stdout, stderr := a.stdout, a.stderr
	if err := df.validate(f); err != nil {
		return err
	}
	log := df.log.logger(stderr)
	conn, err := connectNATS(&df.nats, false, log)
	if err != nil {
		return err
	}
	defer conn.Close(log, 5*time.Second)
	selected, err := tools.SelectDeadLetters(ctx, conn.JS, df.nats.names().DLQStream,
		tools.DLQSelector{Filter: df.filter, Reason: df.reason, Seqs: df.wantSeq, Limit: df.limit})
	if err != nil {
		return err
	}
	if df.sub == "list" {
		tools.WriteDeadLetters(stdout, df.output == "json", selected)
		return nil
	}
	if failed := tools.ReplayDeadLetters(ctx, conn.JS, df.nats.names(), selected, df.keep, stdout, stderr); failed > 0 {
		return &failedError{msg: fmt.Sprintf("%d dead letters could not be replayed", failed)}
	}
	return nil
}
