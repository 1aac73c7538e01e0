package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/backfill"
	"github.com/reconciler/reconciler/internal/testutil"
)

// backfillEnv returns the environment of an in-process backfill against
// emulator base, with its own data directory and NATS port.
func backfillEnv(t *testing.T, base string) map[string]string {
	return map[string]string{
		"CLOUDFLARE_API_BASE_URL":    base,
		"CLOUDFLARE_ACCOUNT_ID":      acct,
		"RECONCILER_DATA_DIR":        t.TempDir(),
		"RECONCILER_EMBEDDED_LISTEN": testutil.FreeAddr(t),
		"RECONCILER_RATE_LIMIT":      "2000/1s",
		"RECONCILER_LOG_LEVEL":       "warn",
	}
}

// lastJSON decodes the last line of out as a backfill summary.
func lastJSON(t *testing.T, out string) backfill.Summary {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var s backfill.Summary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &s); err != nil {
		t.Fatalf("last line is not a JSON summary: %v\n%s", err, out)
	}
	return s
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBackfillNamespace: a patch applied to every script of a namespace
// through the pipeline (run in this process), then a re-run with
// --skip-unmodified: the second reads every script once (and records the
// listing), the third costs only the list pages.
func TestBackfillNamespace(t *testing.T) {
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	const n = 40
	if err := emu.Seed(acct, []string{"customers"}, n); err != nil {
		t.Fatal(err)
	}
	env := backfillEnv(t, base)
	patch := writeFile(t, "patch.json", `{"upsert":[{"type":"r2_bucket","name":"ASSETS","bucket_name":"tenant-assets"}]}`)
	args := []string{"backfill", "--namespace", "customers", "--patch", patch, "--output", "json", "--progress", "none"}
	code, out, stderr := call(t, env, "", args...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	if s := lastJSON(t, out); s.Scripts != n || s.Changed != n || s.Failed != 0 {
		t.Fatalf("summary = %+v", s)
	}
	for i := 1; i <= n; i++ {
		bs, _ := emu.Bindings(acct, "customers", cfapitest.TenantName(i))
		if _, ok := wire.Bindings(bs).ByName("ASSETS"); !ok {
			t.Fatalf("%s has no ASSETS", cfapitest.TenantName(i))
		}
	}
	// The same run again: finished already, nothing read.
	emu.ResetStats()
	code, out, _ = call(t, env, "", args...)
	if s := lastJSON(t, out); code != 0 || !s.Resumed || s.Scripts != n || s.Changed != n || emu.Stats().Requests["get_settings"] != nil {
		t.Fatalf("same run again: exit %d summary %+v reads %d", code, s, emu.Stats().Reads)
	}
	// A new run with --skip-unmodified reads every script once (no record
	// of a converged read yet) ...
	emu.ResetStats()
	code, out, _ = call(t, env, "", append(args, "--run-id", "again", "--skip-unmodified")...)
	if s := lastJSON(t, out); code != 0 || s.Unchanged != n || emu.Stats().Writes != 0 {
		t.Fatalf("second run: exit %d summary %+v writes %d", code, s, emu.Stats().Writes)
	}
	// ... and the next costs only the list pages.
	emu.ResetStats()
	code, out, _ = call(t, env, "", append(args, "--run-id", "third", "--skip-unmodified")...)
	st := emu.Stats()
	if s := lastJSON(t, out); code != 0 || s.Unchanged != n {
		t.Fatalf("third run: exit %d summary %+v", code, s)
	}
	lists := 0
	for _, c := range st.Requests["list_scripts"] {
		lists += c
	}
	if lists == 0 || st.Reads != lists || st.Writes != 0 {
		t.Fatalf("third run: reads=%d writes=%d list pages=%d, want only list pages", st.Reads, st.Writes, lists)
	}
}

// TestBackfillBadInput: an invalid line is reported with its line number
// and counted as failed while the rest applies (exit 1); an unknown
// namespace stops the run before any write.
func TestBackfillBadInput(t *testing.T) {
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(acct, []string{"customers"}, 2); err != nil {
		t.Fatal(err)
	}
	env := backfillEnv(t, base)
	lines := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"a","account_id":"%[1]s","dispatch_namespace":"customers","script":"tenant-0001","op":"patch","upsert":[{"type":"plain_text","name":"X","text":"1"}]}
{"schema":"bindings.change/v1","id":"b","account_id":"%[1]s","dispatch_namespace":"customers","script":"tenant-0002","op":"patch","upsert":[{"type":"kv_namespace","name":"NO_ID"}]}
{"schema":"bindings.change/v1","id":"c","account_id":"%[1]s","dispatch_namespace":"customers","script":"tenant-0002","op":"patch","upsert":[{"type":"plain_text","name":"X","text":"2"}]}
`, acct)
	code, out, stderr := call(t, env, lines, "backfill", "--from", "-", "--output", "json", "--progress", "none")
	s := lastJSON(t, out)
	if code != 1 || s.Scripts != 3 || s.Changed != 2 || s.Failed != 1 || len(s.Failures) != 1 || !strings.Contains(s.Failures[0].Script, "line 2") {
		t.Fatalf("exit %d summary %+v\n%s", code, s, stderr)
	}
	// Unknown namespace: a clear message, nothing written.
	emu.ResetStats()
	patch := writeFile(t, "patch.json", `{"remove":["X"]}`)
	code, _, stderr = call(t, env, "", "backfill", "--namespace", "nope", "--patch", patch, "--progress", "none")
	if code != 1 || !strings.Contains(stderr, `"nope" does not exist`) || emu.Stats().Writes != 0 {
		t.Fatalf("unknown namespace: exit %d writes %d\n%s", code, emu.Stats().Writes, stderr)
	}
}

// TestBackfillDryRunWritesNothing: --dry-run prints plans and a summary.
func TestBackfillDryRunWritesNothing(t *testing.T) {
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(acct, []string{"customers"}, 3); err != nil {
		t.Fatal(err)
	}
	env := backfillEnv(t, base)
	patch := writeFile(t, "patch.json", `{"upsert":[{"type":"plain_text","name":"NEW","text":"v"}]}`)
	code, out, stderr := call(t, env, "", "backfill", "--namespace", "customers", "--patch", patch, "--dry-run")
	if code != 0 || !strings.Contains(out, "+ plain_text NEW") || !strings.Contains(out, "nothing was written") {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	if st := emu.Stats(); st.Writes != 0 {
		t.Fatalf("dry run wrote %d times", st.Writes)
	}
}

// TestBackfillResumesAfterKill runs the real binary: a backfill killed
// with SIGKILL partway is started again with the same run id and ends with
// the totals of the run as a whole, without redoing finished scripts.
func TestBackfillResumesAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	const n = 60
	if err := emu.Seed(acct, []string{"customers"}, n); err != nil {
		t.Fatal(err)
	}
	env := backfillEnv(t, base)
	env["RECONCILER_RATE_LIMIT"] = "40/1s" // slow enough to be killed partway
	patch := writeFile(t, "patch.json", `{"upsert":[{"type":"plain_text","name":"RESUMED","text":"v"}]}`)
	args := []string{"backfill", "--namespace", "customers", "--patch", patch, "--run-id", "killme", "--output", "json", "--progress", "none"}
	exe, _ := os.Executable()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "RECONCILER_TEST_MAIN=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, func() bool { return emu.Stats().Writes >= n/4 }, "a quarter written")
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	before := emu.Stats().Writes
	if before >= n {
		t.Fatalf("all %d scripts were written before the kill", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var outBuf, errBuf testutil.SyncBuffer
	code := realMain(ctx, args, strings.NewReader(""), &outBuf, &errBuf, envMap(env))
	s := lastJSON(t, outBuf.String())
	if code != 0 || !s.Resumed || s.Scripts != n || s.Changed != n || s.Failed != 0 {
		t.Fatalf("resumed run: exit %d summary %+v\n%s", code, s, errBuf.String())
	}
	if w := emu.Stats().Writes; w > n+1 {
		t.Fatalf("writes = %d for %d scripts: finished scripts were redone", w, n)
	}
}

// TestSandbox: the sandbox comes up on free ports when the defaults are
// taken, runs its demo backfill with live events, prints the summary and
// exits 0.
func TestSandbox(t *testing.T) {
	// Take the emulator's default port so the sandbox must pick another.
	if ln, err := net.Listen("tcp", "127.0.0.1:8787"); err == nil {
		defer ln.Close()
	}
	env := map[string]string{"RECONCILER_EMBEDDED_LISTEN": testutil.FreeAddr(t), "RECONCILER_METRICS_ADDR": testutil.FreeAddr(t)}
	code, out, stderr := call(t, env, "", "sandbox", "--tenants", "30")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	for _, want := range []string{"30 scripts", "changed          30", "failed            0", "live events during the backfill: 5", "0 answered 429"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "127.0.0.1:8787/") {
		t.Errorf("the sandbox used a port that was taken:\n%s", out)
	}
}
