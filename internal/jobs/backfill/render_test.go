package backfill

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestWriteSummary: the table says changed, or would change on a dry
// run, and lists each failure; the JSON line decodes to the summary;
// FailureText points at the dead letters only when a script reached the
// pipeline and failed there.
func TestWriteSummary(t *testing.T) {
	s := &Summary{Run: "bf-1", Totals: Totals{Scripts: 3, Changed: 1, Unchanged: 1, Failed: 1}, Invalid: 0, Resumed: true, Seconds: 61.4,
		Failures: []Failure{{Script: "a.customers.t1", Reason: "api_rejected", Error: "code 10021"}}}
	var buf bytes.Buffer
	if err := WriteSummary(&buf, false, s); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"backfill run bf-1 (resumed): 3 scripts in 1m1s", "changed           1", "failed: a.customers.t1  api_rejected  code 10021"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	if got := s.FailureText(); got != "1 of 3 scripts failed (see `reconciler dlq list` for the dead letters)" {
		t.Errorf("FailureText %q", got)
	}
	s.DryRun, s.Resumed = true, false
	buf.Reset()
	_ = WriteSummary(&buf, false, s)
	if !strings.Contains(buf.String(), "would change") || strings.Contains(buf.String(), "resumed") || strings.Contains(s.FailureText(), "dlq") {
		t.Errorf("dry run: %q, %q", buf.String(), s.FailureText())
	}
	buf.Reset()
	if err := WriteSummary(&buf, true, s); err != nil {
		t.Fatal(err)
	}
	var back Summary
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.Run != "bf-1" || back.Failed != 1 || !back.DryRun {
		t.Errorf("JSON %q: %v %+v", buf.String(), err, back)
	}
	if (&Summary{Totals: Totals{Scripts: 2}}).FailureText() != "" {
		t.Error("no failure, yet a FailureText")
	}
}
