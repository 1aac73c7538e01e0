package tools

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// String is the one line that says what a publish did: "published 5
// events, 1 invalid (line 14: 3.0 MB exceeds the 1 MiB limit of an
// event)".
func (sum PublishSummary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "published %s", Plural(sum.Published, "event", "events"))
	if sum.Duplicates > 0 {
		fmt.Fprintf(&b, " (%s dropped by the stream)", Plural(sum.Duplicates, "duplicate", "duplicates"))
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

// Plural is "1 event" or "2 events".
func Plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// OrDash is s, or "-" when it is empty.
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteDeadLetters lists dead letters as text (two lines each, then the
// count) or as JSON lines (one object each, nothing else).
func WriteDeadLetters(w io.Writer, asJSON bool, entries []DLQEntry) {
	for _, en := range entries {
		if asJSON {
			line, _ := json.Marshal(en)
			fmt.Fprintln(w, string(line))
			continue
		}
		fmt.Fprintf(w, "#%d  %s  %-18s  event=%s  subject=%s  attempts=%d\n    %s\n",
			en.Seq, en.Record.FailedAt.Format(time.RFC3339), en.Record.Reason, OrDash(en.Record.EventID),
			en.Record.Subject, en.Record.Attempts, en.Record.Error)
	}
	if !asJSON {
		fmt.Fprintf(w, "%d dead letters\n", len(entries))
	}
}
