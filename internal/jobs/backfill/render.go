package backfill

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteRuns renders runs as a table for people, newest first as List
// returns them.
func WriteRuns(w io.Writer, runs []*RunStatus) error {
	fmt.Fprintf(w, "%-24s %-9s %-13s %7s %9s %6s %6s %-20s %s\n", "RUN", "STATE", "DONE", "CHANGED", "UNCHANGED", "FAILED", "QUEUED", "CREATED", "SOURCE")
	for _, r := range runs {
		fmt.Fprintf(w, "%-24s %-9s %-13s %7d %9d %6d %6d %-20s %s\n", r.Record.ID, r.State, doneText(r), r.Changed, r.Unchanged, r.Failed,
			r.Queued, r.Record.CreatedAt.UTC().Format(time.RFC3339), r.Record.Source)
	}
	fmt.Fprintf(w, "%d backfill runs\n", len(runs))
	return nil
}

// doneText is "12/40", or "12/?" while the total is not known.
func doneText(r *RunStatus) string {
	if r.Record.Total == 0 && r.State == StateRunning {
		return fmt.Sprintf("%d/?", r.Scripts)
	}
	return fmt.Sprintf("%d/%d", r.Scripts, r.Record.Total)
}

// WriteRunStatus renders one run's progress for people.
func WriteRunStatus(w io.Writer, st *RunStatus) error {
	var b strings.Builder
	r := st.Record
	fmt.Fprintf(&b, "backfill run %s: %s\n", r.ID, st.State)
	fmt.Fprintf(&b, "  source     %s\n", r.Source)
	fmt.Fprintf(&b, "  created    %s\n", r.CreatedAt.UTC().Format(time.RFC3339))
	if r.FinishedAt != nil {
		fmt.Fprintf(&b, "  finished   %s\n", r.FinishedAt.UTC().Format(time.RFC3339))
	}
	if r.CancelledAt != nil {
		fmt.Fprintf(&b, "  cancelled  %s\n", r.CancelledAt.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "  progress   %s scripts with a result, %d queued\n", doneText(st), st.Queued)
	fmt.Fprintf(&b, "  changed    %d\n  unchanged  %d\n  failed     %d\n", st.Changed, st.Unchanged, st.Failed)
	if st.Rate > 0 {
		fmt.Fprintf(&b, "  rate       %.1f scripts/s\n", st.Rate)
	}
	if st.ETA > 0 {
		fmt.Fprintf(&b, "  eta        %s\n", st.ETA.Round(time.Second))
	}
	for _, f := range st.Failures {
		fmt.Fprintf(&b, "  failed: %s  %s  %s\n", f.Script, f.Reason, f.Error)
	}
	if st.State != StateCancelled && st.Failed > 0 {
		fmt.Fprintf(&b, "  (start the run again with --run-id %s to retry the failed scripts)\n", r.ID)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteSummary writes s as a table, or as one JSON line when asJSON.
func WriteSummary(w io.Writer, asJSON bool, s *Summary) error {
	if asJSON {
		line, err := json.Marshal(s)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(line))
		return err
	}
	changed := "changed"
	if s.DryRun {
		changed = "would change"
	}
	resumed := ""
	if s.Resumed {
		resumed = " (resumed)"
	}
	fmt.Fprintf(w, "backfill run %s%s: %d scripts in %s\n", s.Run, resumed, s.Scripts, time.Duration(s.Seconds*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(w, "  %-10s %8d\n  %-10s %8d\n  %-10s %8d\n", changed, s.Changed, "unchanged", s.Unchanged, "failed", s.Failed)
	for _, f := range s.Failures {
		if _, err := fmt.Fprintf(w, "  failed: %s  %s  %s\n", f.Script, f.Reason, f.Error); err != nil {
			return err
		}
	}
	return nil
}

// FailureText says how many scripts of s failed, and where their dead
// letters are when some reached the pipeline; "" when none failed.
func (s *Summary) FailureText() string {
	if s.Failed == 0 {
		return ""
	}
	msg := fmt.Sprintf("%d of %d scripts failed", s.Failed, s.Scripts)
	if s.Failed > s.Invalid && !s.DryRun {
		msg += " (see `reconciler dlq list` for the dead letters)"
	}
	return msg
}
