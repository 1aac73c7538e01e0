package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/backfill"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/testutil"
)

// The operator's questions, each answered by a command against a real
// `reconciler run` (a child process on its embedded NATS) and the
// emulator.

const opsSecret = "ops-test-secret-value-0042"

// startOperatorRun seeds tenants scripts in namespace customers, starts
// `reconciler run` with rate (RECONCILER_RATE_LIMIT) and returns the
// emulator and the environment the operator's commands use.
func startOperatorRun(t *testing.T, tenants int, rate string) (*cfapitest.Server, map[string]string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the binary")
	}
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(acct, []string{"customers"}, tenants); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"CLOUDFLARE_API_BASE_URL":    base,
		"CLOUDFLARE_ACCOUNT_ID":      acct,
		"RECONCILER_DATA_DIR":        t.TempDir(),
		"RECONCILER_EMBEDDED_LISTEN": testutil.FreeAddr(t),
		"RECONCILER_METRICS_ADDR":    testutil.FreeAddr(t),
		"RECONCILER_RATE_LIMIT":      rate,
	}
	if rate == "" {
		env["RECONCILER_RATE_LIMIT"] = "2000/1s"
	}
	p := startRun(t, env)
	t.Cleanup(func() { p.stop(t) })
	return emu, env
}

// stop ends the run with SIGTERM and waits for it.
func (p *runProc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// opsEvent is a patch event of a customers tenant.
func opsEvent(id, script string, gen int, body string) string {
	return fmt.Sprintf(`{"schema":"bindings.change/v1","id":"%s","account_id":"%s","dispatch_namespace":"customers","script":"%s","generation":%d,"op":"patch",%s}`,
		id, acct, script, gen, body)
}

// mustCall runs a command and fails the test unless it exits want.
func mustCall(t *testing.T, env map[string]string, stdin string, want int, args ...string) string {
	t.Helper()
	code, out, stderr := call(t, env, stdin, args...)
	if code != want {
		t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, stderr)
	}
	if strings.Contains(out+stderr, opsSecret) {
		t.Fatalf("%s shows the secret value:\n%s%s", strings.Join(args, " "), out, stderr)
	}
	return out
}

// waitLive waits until the emulator's script has binding name with text.
func waitLive(t *testing.T, emu *cfapitest.Server, script, name, text string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() bool {
		bs, _ := emu.Bindings(acct, "customers", script)
		b, ok := wire.Bindings(bs).ByName(name)
		return ok && strings.Contains(string(mustJSON(t, b)), `"text":"`+text+`"`)
	}, "%s never got %s=%s", script, name, text)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// requests sums the emulator's requests to endpoint.
func requests(emu *cfapitest.Server, endpoint string) int {
	n := 0
	for _, c := range emu.Stats().Requests[endpoint] {
		n += c
	}
	return n
}

// jsOf connects to the run's embedded NATS.
func jsOf(t *testing.T, env map[string]string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("nats://" + env["RECONCILER_EMBEDDED_LISTEN"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestOperatorStatusAnswersWhyAndWhatChanged: "why does tenant-0001 not
// have binding USER_KV?" and "what changed on it, and when?" are answered
// by `reconciler status`: desired vs last applied vs live (secret masked),
// the plan, the refused event in the dead letters with its reason, and the
// history of the two writes; --no-live reads nothing from the API.
func TestOperatorStatusAnswersWhyAndWhatChanged(t *testing.T) {
	emu, env := startOperatorRun(t, 2, "")
	mustCall(t, env, opsEvent("op-1", "tenant-0001", 1, `"upsert":[{"type":"plain_text","name":"PLAN","text":"free"},{"type":"secret_text","name":"API_KEY","text":"`+opsSecret+`"}]`)+"\n",
		0, "publish", "-")
	waitLive(t, emu, "tenant-0001", "PLAN", "free")
	mustCall(t, env, opsEvent("op-2", "tenant-0001", 2, `"upsert":[{"type":"plain_text","name":"PLAN","text":"pro"}]`)+"\n", 0, "publish", "-")
	waitLive(t, emu, "tenant-0001", "PLAN", "pro")
	// The platform asks for USER_KV without its namespace_id: publish
	// would refuse it, so it goes to the stream as another producer sends it.
	js := jsOf(t, env)
	bad := opsEvent("op-bad", "tenant-0001", 3, `"upsert":[{"type":"kv_namespace","name":"USER_KV"}]`)
	if _, err := js.Publish(context.Background(), "bindings."+acct+".customers.tenant-0001", []byte(bad)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		_, out, _ := call(t, env, "", "dlq", "list")
		return strings.Contains(out, "1 dead letters")
	}, "the bad event was never dead-lettered")

	emu.ResetStats()
	text := mustCall(t, env, "", 0, "status", "tenant-0001", "--dispatch-namespace", "customers")
	if got := requests(emu, cfapi.EPGetSettings); got != 1 {
		t.Errorf("status made %d live reads, want 1", got)
	}
	for _, want := range []string{
		"script " + acct + ".customers.tenant-0001",
		"desired (revision", "plain_text PLAN", "secret_text API_KEY",
		"last applied:", "live (", "plan (desired vs live vs last applied):", "No changes.",
		"dead letters (1", "op-bad invalid_binding",
		"history (newest last):", "add API_KEY, add PLAN events op-1", "update PLAN events op-2",
		"held: no",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "USER_KV") && !strings.Contains(text, "dead letters") {
		t.Errorf("USER_KV shows outside the dead letters:\n%s", text)
	}

	out := mustCall(t, env, "", 0, "status", acct+".customers.tenant-0001", "--output", "json")
	var st tools.ScriptStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --output json: %v\n%s", err, out)
	}
	if st.Desired == nil || len(st.Desired.Bindings) != 2 || st.Applied.Bindings["PLAN"] != "plain_text" || st.Applied.Bindings["API_KEY"] != "secret_text" {
		t.Errorf("desired %+v applied %+v, want PLAN and API_KEY in both", st.Desired, st.Applied)
	}
	if _, ok := wire.Bindings(st.Live.Bindings).ByName("USER_KV"); ok || !st.Live.Read {
		t.Errorf("live = %+v, want read and without USER_KV", st.Live)
	}
	if len(st.History) != 2 || st.History[0].EventIDs[0] != "op-1" || st.History[1].EventIDs[0] != "op-2" || st.History[1].At.Before(st.History[0].At) {
		t.Errorf("history = %+v, want the writes of op-1 then op-2", st.History)
	}
	if len(st.DeadLetters) != 1 || st.DeadLetters[0].Record.EventID != "op-bad" || st.DeadLetters[0].Record.Reason != "invalid_binding" {
		t.Errorf("dead letters = %+v, want op-bad, invalid_binding", st.DeadLetters)
	}

	emu.ResetStats()
	text = mustCall(t, env, "", 0, "status", "tenant-0001", "--namespace", "customers", "--no-live")
	if st := emu.Stats(); st.Reads != 0 || st.Writes != 0 || !strings.Contains(text, "live: not read (--no-live)") {
		t.Errorf("--no-live: reads %d writes %d\n%s", st.Reads, st.Writes, text)
	}
	// Bad usage names what is wrong.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"status"}, "status needs one SCRIPT"},
		{[]string{"status", "tenant-0001", "--output", "yaml"}, "--output: must be text or json"},
		{[]string{"status", "tenant 1", "--dispatch-namespace", "customers"}, "SCRIPT:"},
	} {
		if code, _, stderr := call(t, env, "", c.args...); code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d %q, want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// TestOperatorDriftFindsTheTenantChangedBehindItsBack: "which tenants
// drifted?" is answered by `reconciler drift`: after a backfill with
// --skip-unmodified recorded every script converged, drift costs the list
// pages alone; a binding changed behind the reconciler's back moves one
// script's modified_on, and drift reads that script alone, reports it
// with the binding and the repairing write, and exits 2.
func TestOperatorDriftFindsTheTenantChangedBehindItsBack(t *testing.T) {
	const n = 4
	emu, env := startOperatorRun(t, n, "")
	var events strings.Builder
	for i := 1; i <= n; i++ {
		events.WriteString(opsEvent(fmt.Sprintf("d-%d", i), cfapitest.TenantName(i), 1, `"upsert":[{"type":"plain_text","name":"PLAN","text":"pro"}]`) + "\n")
	}
	mustCall(t, env, events.String(), 0, "publish", "-")
	for i := 1; i <= n; i++ {
		waitLive(t, emu, cfapitest.TenantName(i), "PLAN", "pro")
	}
	// Nothing recorded converged yet: every managed script is read.
	emu.ResetStats()
	out := mustCall(t, env, "", 0, "drift", "--dispatch-namespace", "customers", "--output", "json")
	var rep tools.DriftReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Managed != n || rep.Drifted != 0 || rep.Reads != n || requests(emu, cfapi.EPGetSettings) != n {
		t.Fatalf("first drift: %+v, %d reads; want %d managed, none drifted, %d reads", rep, requests(emu, cfapi.EPGetSettings), n, n)
	}
	// A backfill with --skip-unmodified reads each once and records it
	// converged with the listing's modified_on.
	patch := writeFile(t, "patch.json", `{"upsert":[{"type":"plain_text","name":"PLAN","text":"pro"}]}`)
	mustCall(t, env, "", 0, "backfill", "--dispatch-namespace", "customers", "--patch", patch, "--skip-unmodified", "--progress", "none")
	emu.ResetStats()
	out = mustCall(t, env, "", 0, "drift", "--dispatch-namespace", "customers")
	if st := emu.Stats(); st.Reads != requests(emu, cfapi.EPListScripts) || !strings.Contains(out, fmt.Sprintf("0 of %d managed scripts drifted, %d in sync (%d not read", n, n, n)) {
		t.Fatalf("drift after a converged backfill: reads %d (list pages %d), want the list pages alone\n%s", st.Reads, requests(emu, cfapi.EPListScripts), out)
	}

	// Someone changes tenant-0003's PLAN with another tool.
	sc, ok := emu.Script(acct, "customers", "tenant-0003")
	if !ok {
		t.Fatal("tenant-0003 missing")
	}
	for i, b := range sc.Bindings {
		if b.Name() == "PLAN" {
			changed, err := wire.ParseBinding([]byte(`{"type":"plain_text","name":"PLAN","text":"free"}`))
			if err != nil {
				t.Fatal(err)
			}
			sc.Bindings[i] = changed
		}
	}
	if err := emu.PutScript(acct, "customers", "tenant-0003", sc); err != nil {
		t.Fatal(err)
	}
	emu.ResetStats()
	code, out, stderr := call(t, env, "", "drift", "--dispatch-namespace", "customers")
	if code != exitDrift {
		t.Fatalf("drift: exit %d, want %d\n%s%s", code, exitDrift, out, stderr)
	}
	for _, want := range []string{"drifted   " + acct + ".customers.tenant-0003", "update plain_text PLAN (value changed)", fmt.Sprintf("1 of %d managed scripts drifted", n)} {
		if !strings.Contains(out, want) {
			t.Errorf("drift output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "tenant-0001") || requests(emu, cfapi.EPGetSettings) != 1 || emu.Stats().Writes != 0 {
		t.Errorf("drift read %d scripts and wrote %d, want 1 read (the modified one) and no write\n%s",
			requests(emu, cfapi.EPGetSettings), emu.Stats().Writes, out)
	}
	// A list of scripts, as JSON: the same answer for the ones named.
	code, out, _ = call(t, env, "", "drift", "--dispatch-namespace", "customers", "tenant-0002", "tenant-0003", "tenant-9999", "--output", "json")
	rep = tools.DriftReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitDrift {
		t.Fatalf("drift of a list: exit %d %v\n%s", code, err, out)
	}
	states := map[string]string{}
	for _, s := range rep.Scripts {
		states[strings.TrimPrefix(s.Script, acct+".customers.")] = s.State
	}
	if states["tenant-0002"] != tools.DriftUnchanged || states["tenant-0003"] != tools.DriftDrifted || states["tenant-9999"] != tools.DriftUnmanaged || rep.Drifted != 1 {
		t.Errorf("drift of a list: %v (drifted %d), want tenant-0002 unmodified, tenant-0003 drifted, tenant-9999 unmanaged", states, rep.Drifted)
	}
	if code, _, stderr := call(t, env, "", "drift"); code != 2 || !strings.Contains(stderr, "give --dispatch-namespace NS") {
		t.Errorf("drift without a scope: exit %d %q", code, stderr)
	}
}

// TestOperatorBackfillListStatusCancel: "what backfills ran, how far is
// this one, stop it" are answered by `backfill list`, `backfill status
// RUN` and `backfill cancel RUN` from another process on the NATS; after
// the cancel the run shows cancelled with no queued item left, and a run
// id reused with other input is refused.
func TestOperatorBackfillListStatusCancel(t *testing.T) {
	const n = 40
	emu, env := startOperatorRun(t, n, "2/1s")
	patch := writeFile(t, "patch.json", `{"upsert":[{"type":"plain_text","name":"SLOW","text":"v"}]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bout, berr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- realMain(ctx, []string{"backfill", "--dispatch-namespace", "customers", "--patch", patch, "--run-id", "slow-1", "--progress", "none"},
			strings.NewReader(""), &bout, &berr, envMap(env))
	}()
	testutil.Eventually(t, 60*time.Second, func() bool { return emu.Stats().Writes >= 2 }, "the backfill never wrote: %s", &berr)

	out := mustCall(t, env, "", 0, "backfill", "list")
	if !strings.Contains(out, "slow-1") || !strings.Contains(out, "running") || !strings.Contains(out, "1 backfill runs") {
		t.Fatalf("backfill list:\n%s", out)
	}
	out = mustCall(t, env, "", 0, "backfill", "status", "slow-1", "--output", "json")
	var st backfill.RunStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.State != backfill.StateRunning || st.Record.Total != n || st.Scripts < 1 || st.Queued == 0 || st.Remaining != n-st.Scripts {
		t.Fatalf("status of a running run = %+v", st)
	}
	text := mustCall(t, env, "", 0, "backfill", "status", "slow-1")
	for _, want := range []string{"backfill run slow-1: running", fmt.Sprintf("/%d scripts with a result", n), "eta"} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}

	out = mustCall(t, env, "", 0, "backfill", "cancel", "slow-1", "--output", "json")
	var cancelled struct {
		Dropped uint64 `json:"dropped"`
		backfill.RunStatus
	}
	if err := json.Unmarshal([]byte(out), &cancelled); err != nil {
		t.Fatal(err)
	}
	if cancelled.Dropped == 0 || cancelled.State != backfill.StateCancelled || cancelled.Queued != 0 {
		t.Fatalf("cancel = dropped %d state %s queued %d, want items dropped, cancelled, none queued", cancelled.Dropped, cancelled.State, cancelled.Queued)
	}
	// Items a runner held already (read, not yet written) finish; an item
	// dropped is never read, so never written.
	readAtCancel := requests(emu, cfapi.EPGetSettings)
	text = mustCall(t, env, "", 0, "backfill", "status", "slow-1")
	if !strings.Contains(text, "backfill run slow-1: cancelled") || !strings.Contains(text, ", 0 queued") {
		t.Errorf("status after cancel:\n%s", text)
	}
	// The process that started the run stops waiting for it.
	select {
	case code := <-done:
		if code != 1 || !strings.Contains(berr.String(), "backfill run was cancelled on") || !strings.Contains(berr.String(), "cancel slow-1") {
			t.Errorf("the backfill that started the run: exit %d, want 1 naming the cancel\n%s", code, berr.String())
		}
	case <-time.After(30 * time.Second):
		cancel()
		<-done
		t.Errorf("the backfill that started the run still waits after the cancel\n%s", berr.String())
	}
	time.Sleep(3 * time.Second) // time for a late write to show, if one came
	if w := emu.Stats().Writes; w > readAtCancel || w >= n {
		t.Errorf("%d writes after the cancel (%d scripts read when it was cancelled, %d in the run)", w, readAtCancel, n)
	}
	t.Logf("cancel dropped %d items; %d scripts read by then, %d written in the end, of %d", cancelled.Dropped, readAtCancel, emu.Stats().Writes, n)
	// A cancelled run is not resumed.
	if code, _, stderr := call(t, env, "", "backfill", "--dispatch-namespace", "customers", "--patch", patch, "--run-id", "slow-1", "--progress", "none"); code != 1 || !strings.Contains(stderr, "cancelled") {
		t.Errorf("resuming a cancelled run: exit %d %q", code, stderr)
	}
	// The same run id with other input is refused, naming both inputs.
	other := writeFile(t, "other.json", `{"upsert":[{"type":"plain_text","name":"OTHER","text":"v"}]}`)
	code, _, stderr := call(t, env, "", "backfill", "--dispatch-namespace", "customers", "--patch", other, "--run-id", "slow-1", "--progress", "none")
	if code != 1 || !strings.Contains(stderr, "backfill run slow-1 was started on") || !strings.Contains(stderr, "with different input") {
		t.Errorf("run id reused with other input: exit %d %q", code, stderr)
	}
	for _, c := range [][]string{{"backfill", "status"}, {"backfill", "status", "no such"}, {"backfill", "cancel", "a", "b"}} {
		if code, _, _ := call(t, env, "", c...); code != 2 {
			t.Errorf("%v: exit %d, want 2", c, code)
		}
	}
	if code, _, stderr := call(t, env, "", "backfill", "status", "never-ran"); code != 1 || !strings.Contains(stderr, "no such backfill run") {
		t.Errorf("status of an unknown run: exit %d %q", code, stderr)
	}
}

// TestOperatorBackfillRetryAndReplay: a resumed run queues its failed
// scripts again (--retry-failed, default true; =false keeps them failed),
// and `dlq replay` republishes a backfill item's dead letter as a live
// event of its script.
func TestOperatorBackfillRetryAndReplay(t *testing.T) {
	emu, env := startOperatorRun(t, 1, "")
	var events strings.Builder
	for _, s := range []string{"tenant-0001", "late-2", "late-3"} {
		events.WriteString(opsEvent("r-"+s, s, 1, `"upsert":[{"type":"plain_text","name":"TIER","text":"gold"}]`) + "\n")
	}
	input := writeFile(t, "events.jsonl", events.String())
	args := []string{"backfill", "--from", input, "--run-id", "retry-1", "--output", "json", "--progress", "none"}
	out := mustCall(t, env, "", 1, args...)
	if s := lastJSON(t, out); s.Changed != 1 || s.Failed != 2 {
		t.Fatalf("first run: %+v, want 1 changed, 2 failed (not found)", s)
	}
	// The operator creates late-2; --retry-failed=false keeps its failure.
	if err := emu.PutScript(acct, "customers", "late-2", cfapitest.Script{}); err != nil {
		t.Fatal(err)
	}
	out = mustCall(t, env, "", 1, append(args, "--retry-failed=false")...)
	if s := lastJSON(t, out); !s.Resumed || s.Changed != 1 || s.Failed != 2 || emu.Stats().Writes != 1 {
		t.Fatalf("resume without retry: %+v, writes %d", s, emu.Stats().Writes)
	}
	out = mustCall(t, env, "", 1, args...)
	if s := lastJSON(t, out); s.Changed != 2 || s.Failed != 1 || len(s.Failures) != 1 || !strings.HasSuffix(s.Failures[0].Script, ".late-3") {
		t.Fatalf("resume with retry: %+v, want late-2 changed and late-3 failed", s)
	}
	waitLive(t, emu, "late-2", "TIER", "gold")

	// late-3 exists now; its dead letters are replayed as live events.
	if err := emu.PutScript(acct, "customers", "late-3", cfapitest.Script{}); err != nil {
		t.Fatal(err)
	}
	key := acct + ".customers.late-3"
	out = mustCall(t, env, "", 0, "dlq", "list", "--script", key)
	if !strings.Contains(out, "bindings_backfill.retry-1."+key) {
		t.Fatalf("dlq list has no backfill dead letter of late-3:\n%s", out)
	}
	out = mustCall(t, env, "", 0, "dlq", "replay", "--script", key)
	if !strings.Contains(out, "to bindings."+key) {
		t.Errorf("replay did not go to the live subject:\n%s", out)
	}
	waitLive(t, emu, "late-3", "TIER", "gold")
	text := mustCall(t, env, "", 0, "status", "late-3", "--dispatch-namespace", "customers", "--no-live")
	if !strings.Contains(text, "add TIER events r-late-3") {
		t.Errorf("status of late-3 lacks the replayed write:\n%s", text)
	}
}
