package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestBadFlags: bad flags exit 2 with a message naming the flag.
func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--only", "1,9"}, "--only"},
		{[]string{"--scripts", "0"}, "--scripts"},
		{[]string{"--burst", "1s"}, "--burst"},
		{[]string{"--other-tool-share", "0.7"}, "--other-tool-share"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--reconciler", "/nonexistent/reconciler"}, "--reconciler"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var stdout, stderr bytes.Buffer
		if code := realMain(context.Background(), tc.args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", tc.args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: stderr %q does not name %s", tc.args, stderr.String(), tc.want)
		}
	}
}

// TestTinyBenchmark builds the reconciler and runs scenario 1 (with 3 and
// 5) on 50 scripts: the table has its rows, and no 429.
func TestTinyBenchmark(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the reconciler binary and runs a backfill (about a minute)")
	}
	var stdout, stderr bytes.Buffer
	code := realMain(context.Background(), []string{"--only", "1", "--scripts", "50", "--live", "3"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"backfill 50 scripts (15 changed)", "API calls ÷ necessary calls", "live events during the backfill (3)", "machine:"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "429 answers") && !strings.Contains(line, " 0 ") {
			t.Errorf("429s: %s", line)
		}
	}
}
