package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/reconciler/reconciler/internal/jobs"
)

func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer, e env) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return usagef("dlq needs a subcommand: list or replay")
	}
	sub := args[0]
	var n natsFlags
	var lf logFlags
	var script, reason, output string
	var limit int
	var seqs string
	var keep bool
	f := newFlagSet("dlq "+sub, e, stderr)
	n.register(f)
	lf.register(f)
	f.str(&script, "script", "", "", "only dead letters of this script: ACCOUNT.NAMESPACE.SCRIPT (namespace _ for ordinary Workers; * wildcards allowed)")
	f.str(&reason, "reason", "", "", "only dead letters with this reason")
	f.IntVar(&limit, "limit", 0, "at most this many dead letters (0 = all)")
	if sub == "list" {
		f.str(&output, "output", "", "text", "output: text or json (JSON lines)")
	} else {
		f.str(&seqs, "seq", "", "", "only these dead-letter sequence numbers, comma-separated")
		f.BoolVar(&keep, "keep", false, "keep replayed dead letters in the stream (default: delete them once republished)")
	}
	if err := f.parse(args[1:]); err != nil {
		return err
	}
	if len(f.pos) > 0 {
		return usagef("dlq %s takes no arguments, got %q", sub, f.pos)
	}
	if err := validateAll(f, &n, &lf); err != nil {
		return err
	}
	if output != "" && output != "text" && output != "json" {
		return usagef("--output: must be text or json, got %q", output)
	}
	if limit < 0 {
		return usagef("--limit: must not be negative")
	}
	filter := ""
	names := n.names()
	if script != "" {
		if strings.Count(script, ".") != 2 {
			return usagef("--script: want ACCOUNT.NAMESPACE.SCRIPT, got %q", script)
		}
		filter = names.DLQPrefix + "." + script
	}
	wantSeq := map[uint64]bool{}
	if seqs != "" {
		for _, s := range strings.Split(seqs, ",") {
			n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
			if err != nil {
				return usagef("--seq: %q is not a sequence number", s)
			}
			wantSeq[n] = true
		}
	}
	log := lf.logger(stderr)
	conn, err := connectNATS(&n, false, log)
	if err != nil {
		return err
	}
	defer conn.close(log, 5*time.Second)
	entries, err := jobs.ListDeadLetters(ctx, conn.js, names.DLQStream, filter, 0)
	if err != nil {
		return err
	}
	var selected []jobs.DLQEntry
	for _, en := range entries {
		if reason != "" && string(en.Record.Reason) != reason {
			continue
		}
		if len(wantSeq) > 0 && !wantSeq[en.Seq] {
			continue
		}
		selected = append(selected, en)
		if limit > 0 && len(selected) >= limit {
			break
		}
	}
	if sub == "list" {
		for _, en := range selected {
			if output == "json" {
				line, _ := json.Marshal(en)
				fmt.Fprintln(stdout, string(line))
				continue
			}
			fmt.Fprintf(stdout, "#%d  %s  %-18s  event=%s  subject=%s  attempts=%d\n    %s\n",
				en.Seq, en.Record.FailedAt.Format(time.RFC3339), en.Record.Reason, orDash(en.Record.EventID),
				en.Record.Subject, en.Record.Attempts, en.Record.Error)
		}
		fmt.Fprintf(stdout, "%d dead letters\n", len(selected))
		return nil
	}
	failed := 0
	for _, en := range selected {
		r := jobs.ReplayDeadLetter(ctx, conn.js, names, en, !keep)
		if r.Error != "" {
			failed++
			fmt.Fprintf(stderr, "#%d event=%s: %s\n", r.Seq, orDash(r.EventID), r.Error)
			continue
		}
		fmt.Fprintf(stdout, "#%d event=%s replayed from the %s to %s\n", r.Seq, orDash(r.EventID), r.Source, r.Subject)
	}
	fmt.Fprintf(stdout, "replayed %d of %d dead letters\n", len(selected)-failed, len(selected))
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
