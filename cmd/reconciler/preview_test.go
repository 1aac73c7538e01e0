package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
)

// TestPlanPreviewFlags: plan says which state it started from;
// --changes-only hides the scripts with nothing to do; bindings left
// alone show only with --verbose; --detailed-exitcode exits 2 when
// something would change and 0 when nothing would; --stored fails
// without a pipeline and cannot be combined with --no-stored.
func TestPlanPreviewFlags(t *testing.T) {
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(acct, []string{"customers"}, 2); err != nil {
		t.Fatal(err)
	}
	bindings, _ := emu.Bindings(acct, "customers", cfapitest.TenantName(1))
	if len(bindings) == 0 {
		t.Fatal("seeded tenant has no bindings")
	}
	change := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"c1","account_id":"%s","dispatch_namespace":"customers","script":"tenant-0001","op":"patch","upsert":[{"type":"plain_text","name":"NEW","text":"v"}]}`, acct)
	noop := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"c2","account_id":"%s","dispatch_namespace":"customers","script":"tenant-0002","op":"patch","remove":["NOT_THERE"]}`, acct)
	env := map[string]string{"CLOUDFLARE_API_BASE_URL": base, "RECONCILER_EMBEDDED_LISTEN": "127.0.0.1:1"}
	both := change + "\n" + noop + "\n"

	code, out, stderr := call(t, env, both, "plan", "-")
	if code != 0 || !strings.HasPrefix(out, "Planning from a reconciler that has applied nothing (no pipeline reachable)") {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "tenant-0002") || strings.Contains(out, "left alone: ") {
		t.Errorf("without --changes-only and --verbose: want every script and no left-alone lines:\n%s", out)
	}
	code, out, _ = call(t, env, both, "plan", "--changes-only", "--verbose", "-")
	if code != 0 || strings.Contains(out, "tenant-0002") || !strings.Contains(out, "+ plain_text NEW") || !strings.Contains(out, "! ") {
		t.Errorf("--changes-only --verbose: exit %d\n%s", code, out)
	}
	if code, out, _ = call(t, env, both, "plan", "--detailed-exitcode", "-"); code != 2 {
		t.Errorf("--detailed-exitcode with a change: exit %d, want 2\n%s", code, out)
	}
	if code, out, _ = call(t, env, noop+"\n", "plan", "--detailed-exitcode", "--no-stored", "-"); code != 0 || !strings.Contains(out, "(--no-stored)") {
		t.Errorf("--detailed-exitcode without a change: exit %d, want 0\n%s", code, out)
	}
	if code, out, _ = call(t, env, both, "plan", "--output", "json", "-"); code != 0 || strings.Count(out, `"base":"fresh"`) != 2 {
		t.Errorf("json: exit %d, want base fresh on both lines\n%s", code, out)
	}
	if code, _, stderr = call(t, env, both, "plan", "--stored", "-"); code != 1 || !strings.Contains(stderr, "--stored: no running reconciler reachable") {
		t.Errorf("--stored without a pipeline: exit %d\n%s", code, stderr)
	}
	if code, _, stderr = call(t, env, both, "plan", "--stored", "--no-stored", "-"); code != 2 || !strings.Contains(stderr, "give only one") {
		t.Errorf("--stored --no-stored: exit %d\n%s", code, stderr)
	}
}

// TestBackfillDryRunSaysWouldChange: a dry run's summary says "would
// change"; with invalid input it fails without pointing at `dlq list`
// (nothing was dead-lettered); --detailed-exitcode exits 2 when a script
// would change and needs --dry-run.
func TestBackfillDryRunSaysWouldChange(t *testing.T) {
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(acct, []string{"customers"}, 2); err != nil {
		t.Fatal(err)
	}
	env := backfillEnv(t, base)
	from := writeFile(t, "events.jsonl", fmt.Sprintf(`{"schema":"bindings.change/v1","id":"d1","account_id":"%s","dispatch_namespace":"customers","script":"tenant-0001","op":"patch","upsert":[{"type":"plain_text","name":"NEW","text":"v"}]}
not an event
`, acct))
	code, out, stderr := call(t, env, "", "backfill", "--from", from, "--dry-run")
	if code != 1 || !strings.Contains(out, "would change        1") || strings.Contains(out, "  changed ") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, stderr)
	}
	if strings.Contains(stderr, "dlq list") || !strings.Contains(stderr, "1 of 2 scripts failed") {
		t.Errorf("dry run with invalid input points at dead letters:\n%s", stderr)
	}
	good := writeFile(t, "good.jsonl", fmt.Sprintf(`{"schema":"bindings.change/v1","id":"d1","account_id":"%s","dispatch_namespace":"customers","script":"tenant-0001","op":"patch","upsert":[{"type":"plain_text","name":"NEW","text":"v"}]}`+"\n", acct))
	if code, out, stderr = call(t, env, "", "backfill", "--from", good, "--dry-run", "--detailed-exitcode", "--output", "json"); code != 2 || !strings.Contains(out, `"dry_run":true`) {
		t.Errorf("--detailed-exitcode: exit %d, want 2\n%s\n%s", code, out, stderr)
	}
	if code, _, stderr = call(t, env, "", "backfill", "--from", good, "--detailed-exitcode"); code != 2 || !strings.Contains(stderr, "need --dry-run") {
		t.Errorf("--detailed-exitcode without --dry-run: exit %d\n%s", code, stderr)
	}
	if st := emu.Stats(); st.Writes != 0 {
		t.Errorf("%d writes", st.Writes)
	}
}
