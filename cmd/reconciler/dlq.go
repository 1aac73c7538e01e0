package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/reconciler/reconciler/internal/jobs/state"
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

func (df *dlqFlags) register(f *flagSet) {
	df.nats.register(f)
	df.log.register(f)
	f.str(&df.script, "script", "", "", "only dead letters of this script: ACCOUNT.NAMESPACE.SCRIPT (namespace _ for ordinary Workers; * wildcards allowed)")
	f.str(&df.reason, "reason", "", "", "only dead letters with this reason")
	f.IntVar(&df.limit, "limit", 0, "at most this many dead letters (0 = all)")
	if df.sub == "list" {
		f.str(&df.output, "output", "", "text", "output: text or json (JSON lines)")
	} else {
		f.str(&df.seqs, "seq", "", "", "only these dead-letter sequence numbers, comma-separated")
		f.BoolVar(&df.keep, "keep", false, "keep replayed dead letters in the stream (default: delete them once republished)")
	}
}

func (df *dlqFlags) validate(f *flagSet) error {
	if err := f.noArgs(""); err != nil {
		return err
	}
	if err := validateAll(f, &df.nats, &df.log); err != nil {
		return err
	}
	if df.output != "" && df.output != "text" && df.output != "json" {
		return usagef("--output: must be text or json, got %q", df.output)
	}
	if df.limit < 0 {
		return usagef("--limit: must not be negative")
	}
	if df.script != "" {
		if strings.Count(df.script, ".") != 2 {
			return usagef("--script: want ACCOUNT.NAMESPACE.SCRIPT, got %q", df.script)
		}
		df.filter = df.nats.names().DLQPrefix + "." + df.script
	}
	df.wantSeq = map[uint64]bool{}
	if df.seqs != "" {
		for _, s := range strings.Split(df.seqs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return usagef("--seq: %q is not a sequence number", s)
			}
			df.wantSeq[n] = true
		}
	}
	return nil
}

// selected returns the dead letters the flags select.
func (df *dlqFlags) selected(ctx context.Context, conn *natsConn) ([]tools.DLQEntry, error) {
	entries, err := tools.ListDeadLetters(ctx, conn.js, df.nats.names().DLQStream, df.filter, 0)
	if err != nil {
		return nil, err
	}
	var out []tools.DLQEntry
	for _, en := range entries {
		if df.reason != "" && string(en.Record.Reason) != df.reason || len(df.wantSeq) > 0 && !df.wantSeq[en.Seq] {
			continue
		}
		out = append(out, en)
		if df.limit > 0 && len(out) >= df.limit {
			break
		}
	}
	return out, nil
}

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer, e env) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return usagef("dlq needs a subcommand: list or replay")
	}
	df := dlqFlags{sub: args[0]}
	f := newFlagSet("dlq "+df.sub, e, stderr)
	df.register(f)
	if err := f.parse(args[1:]); err != nil {
		return err
	}
	if err := df.validate(f); err != nil {
		return err
	}
	log := df.log.logger(stderr)
	conn, err := connectNATS(&df.nats, false, log)
	if err != nil {
		return err
	}
	defer conn.close(log, 5*time.Second)
	selected, err := df.selected(ctx, conn)
	if err != nil {
		return err
	}
	if df.sub == "list" {
		return printDeadLetters(stdout, df.output, selected)
	}
	return replayDeadLetters(ctx, conn, df.nats.names(), selected, df.keep, stdout, stderr)
}

// printDeadLetters lists dead letters as text or JSON lines.
func printDeadLetters(w io.Writer, output string, entries []tools.DLQEntry) error {
	for _, en := range entries {
		if output == "json" {
			line, _ := json.Marshal(en)
			fmt.Fprintln(w, string(line))
			continue
		}
		fmt.Fprintf(w, "#%d  %s  %-18s  event=%s  subject=%s  attempts=%d\n    %s\n",
			en.Seq, en.Record.FailedAt.Format(time.RFC3339), en.Record.Reason, orDash(en.Record.EventID),
			en.Record.Subject, en.Record.Attempts, en.Record.Error)
	}
	if output != "json" { // JSON lines stay JSON lines
		fmt.Fprintf(w, "%d dead letters\n", len(entries))
	}
	return nil
}

// replayDeadLetters republishes dead letters; it fails (exit 1) when one
// could not be replayed.
func replayDeadLetters(ctx context.Context, conn *natsConn, names state.Names, entries []tools.DLQEntry, keep bool, stdout, stderr io.Writer) error {
	failed := 0
	for _, en := range entries {
		r := tools.ReplayDeadLetter(ctx, conn.js, names, en, !keep)
		if r.Error != "" {
			failed++
			fmt.Fprintf(stderr, "#%d event=%s: %s\n", r.Seq, orDash(r.EventID), r.Error)
			continue
		}
		fmt.Fprintf(stdout, "#%d event=%s replayed from the %s to %s\n", r.Seq, orDash(r.EventID), r.Source, r.Subject)
	}
	fmt.Fprintf(stdout, "replayed %d of %d dead letters\n", len(entries)-failed, len(entries))
	if failed > 0 {
		return &failedError{msg: fmt.Sprintf("%d dead letters could not be replayed", failed)}
	}
	return nil
}
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
