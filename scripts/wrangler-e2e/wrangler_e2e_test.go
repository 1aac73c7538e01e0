//go:build wranglere2e

// Package wranglere2e is the end-to-end test of the API emulator with the
// real wrangler: wrangler 4.164 deploys, uploads versions and changes
// secrets of a tenant in `reconciler emulator`, then `reconciler run`
// reconciles a patch event on that tenant. scripts/wrangler-e2e/run.sh
// installs Node and wrangler and runs it; it needs
//
//	WRANGLER_E2E_NODE      the node binary (22.12 or newer)
//	WRANGLER_E2E_WRANGLER  wrangler's bin/wrangler.js
//
// and builds the reconciler binary itself. Nothing reaches the internet:
// every API call goes to the emulator on a loopback port, and wrangler's
// update check is answered from a cache file in a temporary directory.
package wranglere2e

import (
	"bufio"
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
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/testutil"
)

const (
	account = "023e105f4ecef8ad9ca31a8372d0c353"
	token   = "e2e-token"
	tenant  = "tenant-wrangler" // the name in tenant/wrangler.toml
	// namespace exists in the emulator from the start (--namespaces).
	namespace = "customers"
)

// wranglerBindings are the bindings of tenant/wrangler.toml: vars, KV, R2,
// D1, a service and a Durable Object with a migration.
var wranglerBindings = []string{"GREETING", "CONFIG", "MY_KV", "MY_BUCKET", "MY_DB", "AUTH", "COUNTER"}

func TestWranglerAgainstEmulator(t *testing.T) {
	node, wranglerJS := os.Getenv("WRANGLER_E2E_NODE"), os.Getenv("WRANGLER_E2E_WRANGLER")
	if node == "" || wranglerJS == "" {
		t.Fatal("WRANGLER_E2E_NODE and WRANGLER_E2E_WRANGLER must name node and wrangler.js (scripts/wrangler-e2e/run.sh sets them)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "reconciler")
	run(t, ctx, exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/reconciler/reconciler/cmd/reconciler"))

	// Port 0: the emulator prints the address it listens on.
	emu := start(t, bin, "emulator", "--addr", "127.0.0.1:0", "--token", token)
	base := emu.waitFor(t, regexp.MustCompile(`serving at (http://\S+)`))
	t.Logf("emulator at %s", base)
	api := &apiClient{base: base}
	cf, err := cfapi.New(cfapi.Config{BaseURL: base, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	ordinary := cfapi.ScriptRef{AccountID: account, Script: tenant}
	dispatch := cfapi.ScriptRef{AccountID: account, Namespace: namespace, Script: tenant}

	w := newWrangler(t, node, wranglerJS, base)

	// deploy: a new Worker (script PUT), then the existing one (versions
	// POST + deployment + script-settings).
	w.run(t, ctx, "", "deploy")
	requireBindings(t, ctx, cf, ordinary, wranglerBindings...)
	before := api.modifiedOn(t, ordinary)
	w.run(t, ctx, "", "deploy")
	if d := api.deployments(t, ordinary); len(d) != 2 {
		t.Fatalf("after two deploys: %d deployments, want 2", len(d))
	}
	afterDeploy := api.modifiedOn(t, ordinary)
	if afterDeploy <= before {
		t.Errorf("modified_on did not move on deploy: %s then %s", before, afterDeploy)
	}

	// deploy --dispatch-namespace: new, then existing.
	w.run(t, ctx, "", "deploy", "--dispatch-namespace", namespace)
	requireBindings(t, ctx, cf, dispatch, wranglerBindings...)
	w.run(t, ctx, "", "deploy", "--dispatch-namespace", namespace)
	requireBindings(t, ctx, cf, dispatch, wranglerBindings...)

	// secrets: put, bulk, delete on the existing Worker.
	w.run(t, ctx, "s3cr3t-api-key\n", "secret", "put", "API_KEY")
	bulk := filepath.Join(tmp, "bulk.json")
	writeFile(t, bulk, `{"BULK_A":"a","BULK_B":"b"}`)
	w.run(t, ctx, "", "secret", "bulk", bulk)
	if got := api.secrets(t, ordinary); !equal(got, []string{"API_KEY", "BULK_A", "BULK_B"}) {
		t.Fatalf("secrets after put and bulk: %v", got)
	}
	w.run(t, ctx, "", "secret", "delete", "BULK_B")
	if got := api.secrets(t, ordinary); !equal(got, []string{"API_KEY", "BULK_A"}) {
		t.Fatalf("secrets after delete: %v", got)
	}
	if m := api.modifiedOn(t, ordinary); m <= afterDeploy {
		t.Errorf("modified_on did not move on secret edits: %s then %s", afterDeploy, m)
	}
	requireBindings(t, ctx, cf, ordinary, append(wranglerBindings, "API_KEY", "BULK_A")...)

	// secrets on Workers that do not exist: wrangler creates a draft Worker.
	w.run(t, ctx, "draft-secret\n", "secret", "put", "DRAFT_SECRET", "--name", "draft-put")
	writeFile(t, bulk, `{"DRAFT_BULK":"x"}`)
	w.run(t, ctx, "", "secret", "bulk", bulk, "--name", "draft-bulk")
	for name, secret := range map[string]string{"draft-put": "DRAFT_SECRET", "draft-bulk": "DRAFT_BULK"} {
		if got := api.secrets(t, cfapi.ScriptRef{AccountID: account, Script: name}); !equal(got, []string{secret}) {
			t.Errorf("secrets of %s: %v", name, got)
		}
	}

	// versions upload, then versions deploy of that version at 100%.
	out := w.run(t, ctx, "", "versions", "upload", "--message", "e2e upload")
	m := regexp.MustCompile(`Worker Version ID: ([0-9a-f-]{36})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("versions upload printed no version id:\n%s", out)
	}
	version := m[1]
	if d := api.deployments(t, ordinary); d[0].Versions[0].VersionID == version {
		t.Fatalf("versions upload deployed the version")
	}
	w.run(t, ctx, "", "versions", "deploy", version+"@100%", "-y", "--message", "e2e deploy")
	if d := api.deployments(t, ordinary); len(d[0].Versions) != 1 || d[0].Versions[0].VersionID != version {
		t.Fatalf("after versions deploy the active deployment is %+v, want %s at 100%%", d[0], version)
	}
	out = w.run(t, ctx, "", "deployments", "list")
	if !strings.Contains(out, version) {
		t.Errorf("deployments list does not show %s:\n%s", version, out)
	}
	// The secrets survived the version upload (keep_bindings).
	requireBindings(t, ctx, cf, ordinary, append(wranglerBindings, "API_KEY", "BULK_A")...)

	// The reconciler adds a binding to each tenant wrangler deployed.
	natsAddr := testutil.FreeAddr(t)
	dataDir := filepath.Join(tmp, "nats")
	start(t, bin, "run", "--data-dir", dataDir, "--embedded-listen", natsAddr, "--metrics-addr", "",
		"--api-base-url", base, "--log-format", "console")
	events := filepath.Join(tmp, "events.jsonl")
	writeFile(t, events, event("e2e-ordinary", "")+"\n"+event("e2e-dispatch", namespace)+"\n")
	testutil.Eventually(t, time.Minute, func() bool {
		cmd := exec.CommandContext(ctx, bin, "publish", "--data-dir", dataDir, "--embedded-listen", natsAddr, events)
		cmd.Env = append(os.Environ(), "CLOUDFLARE_API_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("publish (reconciler not ready yet?): %v: %s", err, out)
		}
		return err == nil
	}, "reconciler publish never succeeded (the output of reconciler run follows)")
	for _, ref := range []cfapi.ScriptRef{ordinary, dispatch} {
		testutil.Eventually(t, time.Minute, func() bool {
			s, err := cf.GetSettings(ctx, ref)
			if err != nil {
				return false
			}
			_, ok := s.Bindings.ByName("ADDED_KV")
			return ok
		}, "ADDED_KV never appeared on %s (the output of reconciler run follows)", ref)
	}
	requireBindings(t, ctx, cf, ordinary, append(wranglerBindings, "API_KEY", "BULK_A", "ADDED_KV")...)
	requireBindings(t, ctx, cf, dispatch, append(wranglerBindings, "ADDED_KV")...)
	if got := api.secrets(t, ordinary); !equal(got, []string{"API_KEY", "BULK_A"}) {
		t.Errorf("secrets after the reconciler: %v", got)
	}

	// wrangler still works on the reconciled Worker.
	w.run(t, ctx, "", "deployments", "list")
}

// event is a patch event that adds the KV namespace ADDED_KV.
func event(id, ns string) string {
	e := map[string]any{
		"schema": "bindings.change/v1", "id": id, "account_id": account, "script": tenant,
		"generation": 1, "op": "patch",
		"upsert": []any{map[string]any{"type": "kv_namespace", "name": "ADDED_KV", "namespace_id": "11111111111111111111111111111111"}},
	}
	if ns != "" {
		e["dispatch_namespace"] = ns
	}
	b, _ := json.Marshal(e)
	return string(b)
}

// requireBindings fails unless the script has exactly the named bindings.
func requireBindings(t *testing.T, ctx context.Context, cf *cfapi.Client, ref cfapi.ScriptRef, names ...string) {
	t.Helper()
	s, err := cf.GetSettings(ctx, ref)
	if err != nil {
		t.Fatalf("settings of %s: %v", ref, err)
	}
	if got := s.Bindings.Names(); !equal(got, names) {
		t.Fatalf("bindings of %s: %v, want %v", ref, got, names)
	}
}

// equal compares two name lists as sets.
func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, s := range a {
		seen[s]++
	}
	for _, s := range b {
		if seen[s] == 0 {
			return false
		}
		seen[s]--
	}
	return true
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, ctx context.Context, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	return string(out)
}

// process is a long-running child whose output is collected.
type process struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs bin with args until the test ends (then SIGTERM).
func start(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...)}
	p.cmd.Env = append(os.Environ(), "CLOUDFLARE_API_TOKEN="+token)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		pw.Close()
		if t.Failed() {
			t.Logf("%s output:\n%s", args[0], p.output())
		}
	})
	return p
}

// waitFor waits until the output matches re and returns the first group.
func (p *process) waitFor(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	var m []string
	testutil.Eventually(t, 30*time.Second, func() bool {
		m = re.FindStringSubmatch(p.output())
		return m != nil
	}, "%s never printed %s; output:\n%s", p.cmd.Args[1], re, p.output())
	return m[1]
}

// wrangler runs wrangler in a project directory against the emulator.
type wrangler struct {
	node, js, dir string
	env           []string
}

func newWrangler(t *testing.T, node, js, base string) *wrangler {
	// The project is tenant/ (the one the README's "Try it with wrangler"
	// deploys), copied so that wrangler's .wrangler directory stays out of
	// the repository.
	dir := t.TempDir()
	for _, f := range []string{"wrangler.toml", filepath.Join("src", "index.js")} {
		data, err := os.ReadFile(filepath.Join("tenant", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, f), string(data))
	}
	home, tmp := t.TempDir(), t.TempDir()
	// wrangler checks for updates on the npm registry when it prints its
	// banner; the banner is off, and a fresh cache answers any other check.
	cache := fmt.Sprintf(`{"latest":"4.164.0","lastUpdate":%d}`, time.Now().UnixMilli())
	writeFile(t, filepath.Join(tmp, "update-check", "wrangler-latest.json"), cache)
	env := []string{
		"PATH=" + filepath.Dir(node) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + home, "TMPDIR=" + tmp, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"CLOUDFLARE_API_BASE_URL=" + base, "CLOUDFLARE_API_TOKEN=" + token, "CLOUDFLARE_ACCOUNT_ID=" + account,
		"WRANGLER_SEND_METRICS=false", "WRANGLER_HIDE_BANNER=true", "CI=true",
		"WRANGLER_LOG_PATH=" + filepath.Join(home, "logs"),
	}
	return &wrangler{node: node, js: js, dir: dir, env: env}
}

// run runs one wrangler command with stdin and returns its output; it
// fails the test unless wrangler exits 0.
func (w *wrangler) run(t *testing.T, ctx context.Context, stdin string, args ...string) string {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, w.node, append([]string{w.js}, args...)...)
	cmd.Dir, cmd.Env, cmd.Stdin = w.dir, w.env, strings.NewReader(stdin)
	out := run(t, ctx, cmd)
	t.Logf("wrangler %s: ok", strings.Join(args, " "))
	return out
}

// apiClient reads what the typed client does not: secrets, deployments
// and the script's modified_on.
type apiClient struct{ base string }

func (a *apiClient) get(t *testing.T, path string, result any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, a.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Success bool            `json:"success"`
		Result  json.RawMessage `json:"result"`
	}
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &env); err != nil || !env.Success {
		t.Fatalf("GET %s: HTTP %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(env.Result, result); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

func scriptPath(ref cfapi.ScriptRef) string {
	if ref.Namespace != "" {
		return "/accounts/" + ref.AccountID + "/workers/dispatch/namespaces/" + ref.Namespace + "/scripts/" + ref.Script
	}
	return "/accounts/" + ref.AccountID + "/workers/scripts/" + ref.Script
}

func (a *apiClient) secrets(t *testing.T, ref cfapi.ScriptRef) []string {
	t.Helper()
	var list []struct{ Name string }
	a.get(t, scriptPath(ref)+"/secrets", &list)
	var names []string
	for _, s := range list {
		names = append(names, s.Name)
	}
	return names
}

type deployment struct {
	ID       string
	Versions []struct {
		VersionID  string  `json:"version_id"`
		Percentage float64 `json:"percentage"`
	}
}

func (a *apiClient) deployments(t *testing.T, ref cfapi.ScriptRef) []deployment {
	t.Helper()
	var res struct{ Deployments []deployment }
	a.get(t, scriptPath(ref)+"/deployments", &res)
	if len(res.Deployments) == 0 {
		t.Fatalf("%s has no deployment", ref)
	}
	return res.Deployments
}

// modifiedOn returns the script's modified_on (a sortable timestamp).
func (a *apiClient) modifiedOn(t *testing.T, ref cfapi.ScriptRef) string {
	t.Helper()
	var res struct {
		ModifiedOn string `json:"modified_on"`
	}
	a.get(t, "/accounts/"+ref.AccountID+"/workers/services/"+ref.Script, &res)
	return res.ModifiedOn
}
