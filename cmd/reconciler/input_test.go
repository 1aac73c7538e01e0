package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/testutil"

	"go.uber.org/zap"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/jobs/state"
)

// longLineInput is 5 valid events, a 3 MB line (line 6), and 2 valid
// events after it.
func longLineInput(idPrefix string) string {
	var b strings.Builder
	line := func(i int) {
		fmt.Fprintf(&b, `{"schema":"bindings.change/v1","id":"%s-%d","account_id":"%s","dispatch_namespace":"customers","script":"%s","generation":1,"op":"patch","upsert":[{"type":"plain_text","name":"LONG_LINE","text":"ok"}]}`+"\n",
			idPrefix, i, acct, cfapitest.TenantName(i))
	}
	for i := 1; i <= 5; i++ {
		line(i)
	}
	fmt.Fprintf(&b, `{"schema":"bindings.change/v1","id":"%s-big","account_id":"%s","dispatch_namespace":"customers","script":"tenant-big","op":"patch","upsert":[{"type":"plain_text","name":"BIG","text":"%s"}]}`+"\n",
		idPrefix, acct, strings.Repeat("x", 3_000_000))
	for i := 6; i <= 7; i++ {
		line(i)
	}
	return b.String()
}

// TestPublishLongLineInTheMiddle: a 3 MB line in the middle of the input
// is refused with its line number, its size and the limit; the lines
// after it are published, and the summary counts what the stream really
// got.
func TestPublishLongLineInTheMiddle(t *testing.T) {
	srv, js := testutil.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := state.EnsureStreams(ctx, js, state.SetupConfig{}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"NATS_URL": srv.ClientURL()}
	in := writeFile(t, "events.jsonl", longLineInput("ll"))
	code, out, stderr := call(t, env, "", "publish", in)
	if code != 1 {
		t.Errorf("exit %d, want 1 (a line was not published)", code)
	}
	want := "published 7 events, 1 invalid (line 6: 3.0 MB exceeds the 1 MiB limit of an event)\n"
	if out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if !strings.Contains(stderr, in+": line 6: 3.0 MB exceeds the 1 MiB limit of an event") || strings.Contains(stderr, "token too long") {
		t.Errorf("stderr does not name the file, the line and the limit: %q", stderr)
	}
	si, err := res.Stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Msgs != 7 {
		t.Errorf("the stream holds %d events, want 7", si.State.Msgs)
	}
	// Again: every event is a duplicate now, and the summary says so.
	_, out, _ = call(t, env, "", "publish", in)
	if want := "published 0 events (7 duplicates dropped by the stream), 1 invalid (line 6: 3.0 MB exceeds the 1 MiB limit of an event)\n"; out != want {
		t.Errorf("second publish: %q, want %q", out, want)
	}
	// With --no-validate the line is within the server's max_payload
	// (natsembed.MaxPayload) and goes out, for the pipeline to
	// dead-letter as too large.
	_, out, _ = call(t, env, "", "publish", "--no-validate", in)
	if want := "published 1 event (7 duplicates dropped by the stream)\n"; out != want {
		t.Errorf("publish --no-validate: %q, want %q", out, want)
	}
	// One line: singular.
	code, out, _ = call(t, env, strings.SplitAfter(longLineInput("one"), "\n")[0], "publish", "-")
	if code != 0 || out != "published 1 event\n" {
		t.Errorf("publish of one line: exit %d %q", code, out)
	}
}

// TestBackfillLongLineInTheMiddle: backfill --from with the same input
// reconciles the 7 scripts and reports the long line as invalid input
// naming the file, the line and the limit.
func TestBackfillLongLineInTheMiddle(t *testing.T) {
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(acct, []string{"customers"}, 7); err != nil {
		t.Fatal(err)
	}
	in := writeFile(t, "events.jsonl", longLineInput("bl"))
	code, out, stderr := call(t, backfillEnv(t, base), "", "backfill", "--from", in, "--output", "json", "--progress", "none")
	s := lastJSON(t, out)
	if code != 1 || s.Scripts != 8 || s.Changed != 7 || s.Invalid != 1 || len(s.Failures) != 1 {
		t.Fatalf("exit %d, summary %+v\n%s", code, s, stderr)
	}
	f := s.Failures[0]
	if f.Script != in+" line 6" || f.Reason != "invalid_input" || f.Error != "3.0 MB exceeds the 1 MiB limit of an event" {
		t.Errorf("failure %+v", f)
	}
	if strings.Contains(stderr, "token too long") {
		t.Errorf("stderr: %s", stderr)
	}
}
