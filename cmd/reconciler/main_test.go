package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/clihelp"
	"github.com/reconciler/reconciler/internal/testutil"
)

// TestMain lets a test run the real binary: the test executable re-runs
// itself with RECONCILER_TEST_MAIN=1 and behaves as `reconciler`.
func TestMain(m *testing.M) {
	if os.Getenv("RECONCILER_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

const acct = cfapitest.DefaultAccount

// envMap returns an env func over a map.
func envMap(m map[string]string) clihelp.Env { return func(k string) string { return m[k] } }

// call runs realMain in-process.
func call(t *testing.T, e map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := realMain(context.Background(), args, strings.NewReader(stdin), &out, &errOut, envMap(e))
	return code, out.String(), errOut.String()
}

func TestUsageErrorsNameTheFlag(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"run", "--rate-limit", "fast"}, nil, "--rate-limit"},
		{[]string{"run"}, map[string]string{"RECONCILER_RATE_LIMIT": "1/5m"}, "RECONCILER_RATE_LIMIT"},
		{[]string{"run", "--concurrency", "0"}, nil, "--concurrency"},
		{[]string{"run", "--default-strategy", "fast"}, nil, "--default-strategy"},
		{[]string{"run"}, map[string]string{"RECONCILER_DEFAULT_STRATEGY": "patch"}, "RECONCILER_DEFAULT_STRATEGY"},
		{[]string{"run"}, map[string]string{"RECONCILER_CONCURRENCY": "many"}, "RECONCILER_CONCURRENCY"},
		{[]string{"run", "--log-format", "xml"}, nil, "--log-format"},
		{[]string{"run", "--subject-prefix", "a.b"}, nil, "--subject-prefix"},
		{[]string{"run", "--shutdown-timeout", "0s", "--api-base-url", "http://127.0.0.1:1"}, nil, "--shutdown-timeout"},
		{[]string{"run"}, nil, "CLOUDFLARE_API_TOKEN"},
		{[]string{"run"}, map[string]string{"CLOUDFLARE_API_EMAIL": "a@b.c"}, "CLOUDFLARE_API_KEY"},
		{[]string{"run", "--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"publish"}, nil, "missing input"},
		{[]string{"publish", "a", "b"}, nil, "want one input"},
		{[]string{"plan", "--output", "yaml"}, map[string]string{"CLOUDFLARE_API_TOKEN": "t"}, "--output"},
		{[]string{"dlq"}, nil, "list or replay"},
		{[]string{"dlq", "list", "--script", "nodots"}, nil, "--script"},
		{[]string{"emulator", "--fail-rate", "2"}, nil, "--fail-rate"},
		{[]string{"backfill"}, nil, "--from"},
		{[]string{"backfill", "--namespace", "customers"}, nil, "--patch"},
		{[]string{"backfill", "--namespace", "customers", "--patch", "p.json"}, nil, "CLOUDFLARE_ACCOUNT_ID"},
		{[]string{"backfill", "--from", "x", "--run-id", "a.b"}, nil, "--run-id"},
		{[]string{"publish", "--concurrency", "4", "x"}, nil, "concurrency"},
		{[]string{"frobnicate"}, nil, "unknown command"},
	}
	for _, c := range cases {
		code, _, stderr := call(t, c.env, "", c.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", c.args, code, stderr)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%v: stderr %q does not name %q", c.args, stderr, c.want)
		}
	}
	if code, out, _ := call(t, nil, "", "version"); code != 0 || !strings.HasPrefix(out, "reconciler ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
}

// TestEmulatorServesCapturedDispatchUpload: `reconciler emulator` serves;
// a PUT of a captured wrangler upload followed by GET settings shows its
// bindings without secret text.
func TestEmulatorServesCapturedDispatchUpload(t *testing.T) {
	addr := testutil.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- realMain(ctx, []string{"emulator", "--addr", addr}, nil, stdout, io.Discard, envMap(nil))
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("emulator exited %d", code)
		}
	}()
	var base string
	deadline := time.Now().Add(10 * time.Second)
	for base == "" && time.Now().Before(deadline) {
		if m := regexp.MustCompile(`serving at (\S+)`).FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	if base == "" {
		t.Fatalf("emulator did not print its base URL: %q", stdout.String())
	}
	put := func(dir, file, path string) {
		t.Helper()
		capDir := filepath.Join("..", "..", "internal", "cfapi", "testdata", "wrangler-captures", dir)
		body, err := os.ReadFile(filepath.Join(capDir, file+".body.raw"))
		if err != nil {
			t.Fatal(err)
		}
		req, err := os.ReadFile(filepath.Join(capDir, file+".req.raw"))
		if err != nil {
			t.Fatal(err)
		}
		ct := regexp.MustCompile(`(?mi)^content-type: (multipart/form-data; boundary=\S+)\r?$`).FindSubmatch(req)
		if ct == nil {
			t.Fatalf("%s: no multipart content type in the capture", file)
		}
		hr, _ := http.NewRequest("PUT", base+path+"?excludeScript=true&bindings_inherit=strict", bytes.NewReader(body))
		hr.Header.Set("Content-Type", string(ct[1]))
		resp, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("PUT %s: %d %s", path, resp.StatusCode, data)
		}
	}
	get := func(path string) []wire.Binding {
		t.Helper()
		resp, err := http.Get(base + path + "/settings")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env struct {
			Success bool
			Result  cfapi.Settings
		}
		if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || !env.Success {
			t.Fatalf("GET settings: %v %+v", err, env)
		}
		return env.Result.Bindings
	}
	dispatch := "/accounts/" + acct + "/workers/dispatch/namespaces/my-ns/scripts/my-worker"
	put("b1-deploy-dispatch-new", "006-PUT-workers_dispatch_namespaces_my-ns_scripts_my-worker", dispatch)
	bs := get(dispatch)
	names := wire.Bindings(bs).Names()
	for _, want := range []string{"GREETING", "CONFIG", "MY_KV", "COUNTER", "MY_BUCKET", "MY_DB", "AUTH"} {
		if _, ok := wire.Bindings(bs).ByName(want); !ok {
			t.Errorf("dispatch script lacks %s (has %v)", want, names)
		}
	}
	// An ordinary upload with a secret: GET shows it without its text.
	ordinary := "/accounts/" + acct + "/workers/scripts/my-worker"
	put("a3-deploy-new-secrets-file", "008-PUT-workers_scripts_my-worker", ordinary)
	sec, ok := wire.Bindings(get(ordinary)).ByName("API_KEY")
	if !ok || sec.Type() != "secret_text" || strings.Contains(string(sec.Raw()), "key-from-secrets-file") {
		t.Fatalf("secret as GET shows it: %s (found %v)", sec.Raw(), ok)
	}
}

// TestPlanWritesNothing: `reconciler plan` reads events and live state and
// prints the plan; the emulator sees no write.
func TestPlanWritesNothing(t *testing.T) {
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(acct, []string{"customers"}, 2); err != nil {
		t.Fatal(err)
	}
	events := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"p1","account_id":"%s","dispatch_namespace":"customers","script":"tenant-0001","generation":1,"op":"patch","upsert":[{"type":"kv_namespace","name":"NEW_KV","namespace_id":"abc"},{"type":"secret_text","name":"NEW_SECRET","text":"s3cr3t-value"}],"remove":["TENANT"]}
{"schema":"bindings.change/v1","id":"p2","account_id":"%s","dispatch_namespace":"customers","script":"tenant-0002","op":"replace","bindings":[]}
`, acct, acct)
	code, out, stderr := call(t, map[string]string{"CLOUDFLARE_API_BASE_URL": base}, events, "plan", "-")
	if code != 0 {
		t.Fatalf("plan exit %d: %s", code, stderr)
	}
	for _, want := range []string{"+ kv_namespace NEW_KV", "secret_text NEW_SECRET", "(sensitive)", "- plain_text TENANT", "tenant-0002", "No changes"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cr3t-value") {
		t.Fatal("plan output shows a secret")
	}
	if st := emu.Stats(); st.Writes != 0 || st.Reads != 2 {
		t.Fatalf("emulator saw writes=%d reads=%d, want 0 and 2", st.Writes, st.Reads)
	}
	// JSON output is one object per script.
	code, out, _ = call(t, map[string]string{"CLOUDFLARE_API_BASE_URL": base}, events, "plan", "--output", "json")
	if code != 0 || strings.Count(out, "\n") != 2 || strings.Contains(out, "s3cr3t-value") {
		t.Fatalf("json plan: exit %d\n%s", code, out)
	}
}

// TestRunPublishAndGracefulShutdown runs the real binary: `run` with no
// NATS URL starts the embedded server; `publish` against it applies
// changes; SIGTERM with work in flight exits within the shutdown timeout;
// the unfinished events are redelivered to the next run, which converges.
func TestRunPublishAndGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{Faults: cfapitest.Faults{WriteLatency: 300 * time.Millisecond}})
	const scripts = 12
	if err := emu.Seed(acct, []string{"customers"}, scripts); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	listen := testutil.FreeAddr(t)
	env := map[string]string{
		"CLOUDFLARE_API_BASE_URL":     base,
		"RECONCILER_DATA_DIR":         dataDir,
		"RECONCILER_EMBEDDED_LISTEN":  listen,
		"RECONCILER_METRICS_ADDR":     testutil.FreeAddr(t),
		"RECONCILER_CONCURRENCY":      "1",
		"RECONCILER_MAX_WRITES":       "1",
		"RECONCILER_SHUTDOWN_TIMEOUT": "5s",
		"RECONCILER_ACK_WAIT":         "3s",
	}
	first := startRun(t, env)
	var lines strings.Builder
	for i := 1; i <= scripts; i++ {
		fmt.Fprintf(&lines, `{"schema":"bindings.change/v1","id":"g-%d","account_id":"%s","dispatch_namespace":"customers","script":"%s","generation":1,"op":"patch","upsert":[{"type":"plain_text","name":"GRACEFUL","text":"yes"}]}`+"\n",
			i, acct, cfapitest.TenantName(i))
	}
	code, out, stderr := call(t, env, lines.String(), "publish", "-")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("published %d events", scripts)) {
		t.Fatalf("publish: exit %d\n%s%s", code, out, stderr)
	}
	// Wait for the first write to be under way, then ask for a shutdown.
	deadline := time.Now().Add(20 * time.Second)
	for emu.Stats().Writes == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- first.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("run exited with %v\n%s", err, first.log.String())
		}
	case <-time.After(5*time.Second + 5*time.Second):
		_ = first.cmd.Process.Kill()
		t.Fatalf("run did not exit within its 5s shutdown timeout (+5s slack)\n%s", first.log.String())
	}
	t.Logf("exited %s after SIGTERM; writes done before: %d of %d", time.Since(start).Round(time.Millisecond), emu.Stats().Writes, scripts)
	if !strings.Contains(first.log.String(), "embedded NATS server stopped") {
		t.Errorf("the embedded server was not stopped last:\n%s", first.log.String())
	}
	if emu.Stats().Writes >= scripts {
		t.Fatalf("every script was written before the shutdown; the test did not leave work unfinished")
	}

	// The next run picks up what the first left.
	second := startRun(t, env)
	deadline = time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		done := 0
		for i := 1; i <= scripts; i++ {
			bs, _ := emu.Bindings(acct, "customers", cfapitest.TenantName(i))
			if _, ok := wire.Bindings(bs).ByName("GRACEFUL"); ok {
				done++
			}
		}
		if done == scripts {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 1; i <= scripts; i++ {
		bs, _ := emu.Bindings(acct, "customers", cfapitest.TenantName(i))
		if _, ok := wire.Bindings(bs).ByName("GRACEFUL"); !ok {
			t.Errorf("%s never got its binding", cfapitest.TenantName(i))
		}
	}
	// Every event is settled (acknowledged), none dead-lettered.
	nc, err := nats.Connect("nats://" + listen)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var ci *jetstream.ConsumerInfo
	for time.Now().Before(deadline) {
		c, err := js.Consumer(context.Background(), "BINDINGS", "reconciler")
		if err == nil {
			if ci, err = c.Info(context.Background()); err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ci == nil || ci.NumAckPending != 0 || ci.NumPending != 0 {
		t.Fatalf("events not settled: %+v", ci)
	}
	code, out, _ = call(t, env, "", "dlq", "list")
	if code != 0 || !strings.Contains(out, "0 dead letters") {
		t.Fatalf("dlq list: %d %s", code, out)
	}
	_ = second.cmd.Process.Signal(syscall.SIGTERM)
	_ = second.cmd.Wait()
}

type runProc struct {
	cmd *exec.Cmd
	log *testutil.SyncBuffer
}

// startRun starts `reconciler run` as a child process and waits until it
// logs that it is running.
func startRun(t *testing.T, env map[string]string) *runProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "run", "--log-format", "console")
	cmd.Env = append(os.Environ(), "RECONCILER_TEST_MAIN=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	log := &testutil.SyncBuffer{}
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), "reconciler running") {
		if time.Now().After(deadline) {
			t.Fatalf("run did not start:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &runProc{cmd: cmd, log: log}
}
