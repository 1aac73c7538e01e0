package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/testutil"
)

// buildVersion and buildCommit are stamped into the test binary the way
// the Dockerfile stamps a release.
const (
	buildVersion = "deploy-test"
	buildCommit  = "0123456789abcdef0123456789abcdef01234567"
)

var (
	binDir   string // removed by TestMain
	buildErr error
	buildOut []byte
	building sync.Once
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "reconciler-deploy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// reconcilerBinary builds cmd/reconciler once per test run, with the
// version and commit stamped as the Dockerfile does, and returns its path.
func reconcilerBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the reconciler binary (not in -short)")
	}
	exe := filepath.Join(binDir, "reconciler")
	building.Do(func() {
		cmd := exec.Command("go", "build", "-o", exe,
			"-ldflags", "-X main.version="+buildVersion+" -X main.commit="+buildCommit,
			"github.com/reconciler/reconciler/cmd/reconciler")
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/reconciler: %v\n%s", buildErr, buildOut)
	}
	return exe
}

// tool returns the path of an external tool, or skips the test with a
// message that says how to get it.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (Debian: apt-get install prometheus); .ci/run installs it", name)
	}
	return p
}

// process is a child process that the test stops with SIGTERM at cleanup.
type process struct {
	cmd *exec.Cmd
	out *testutil.SyncBuffer
}

// start runs a command whose output is kept for failure messages, and
// stops it (SIGTERM, then SIGKILL after 10s) when the test ends.
func start(t *testing.T, env []string, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), out: &testutil.SyncBuffer{}}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM and waits for the exit; a second call does nothing.
func (p *process) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Logf("%s exited: %v", filepath.Base(p.cmd.Path), err)
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		t.Errorf("%s did not stop within 10s of SIGTERM\n%s", filepath.Base(p.cmd.Path), p.out.String())
	}
}

// reconcilerEnv is the environment of a reconciler child process: the
// test's, without anything that could point it at real services.
func reconcilerEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "RECONCILER_") || strings.HasPrefix(k, "CLOUDFLARE_") || k == "NATS_URL" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// running is a `reconciler run` child process.
type running struct {
	*process
	metricsAddr string // host:port of /metrics, /healthz, /readyz
	natsListen  string // host:port of its embedded NATS server
	env         []string
}

// runReconciler starts `reconciler run` against the API emulator at
// apiBase, with the embedded NATS server in a temporary directory (or the
// NATS server at natsURL when it is not empty), and waits until /readyz
// answers 200.
func runReconciler(t *testing.T, apiBase, natsURL string) *running {
	t.Helper()
	exe := reconcilerBinary(t)
	r := &running{metricsAddr: testutil.FreeAddr(t), natsListen: testutil.FreeAddr(t)}
	r.env = reconcilerEnv(
		"CLOUDFLARE_API_BASE_URL="+apiBase,
		"NATS_URL="+natsURL,
		"RECONCILER_DATA_DIR="+t.TempDir(),
		"RECONCILER_EMBEDDED_LISTEN="+r.natsListen,
		"RECONCILER_METRICS_ADDR="+r.metricsAddr,
		"RECONCILER_LOG_FORMAT=console",
		"RECONCILER_COALESCE_DELAY=10ms",
	)
	r.process = start(t, r.env, exe, "run")
	testutil.Eventually(t, 30*time.Second, func() bool {
		if r.cmd.ProcessState != nil {
			t.Fatalf("reconciler run exited early:\n%s", r.out.String())
		}
		code, _ := httpGet(r.metricsAddr, "/readyz")
		return code == http.StatusOK
	}, "reconciler run answers /readyz with 200; log:\n%s", r.out)
	return r
}

// publish runs `reconciler publish -` with the events on stdin against the
// embedded server of r.
func (r *running) publish(t *testing.T, events string) {
	t.Helper()
	cmd := exec.Command(reconcilerBinary(t), "publish", "-")
	cmd.Env = r.env
	cmd.Stdin = strings.NewReader(events)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("reconciler publish: %v\n%s", err, out)
	}
}

// scrape reads r's /metrics and parses it.
func (r *running) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(r.metricsAddr, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs
}

// httpGet returns the status and body of GET http://addr+path (status 0
// when there is no answer).
func httpGet(addr, path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// emulator starts the API emulator with tenants tenant-0001..n in the
// dispatch namespace "customers" of cfapitest.DefaultAccount.
func emulator(t *testing.T, tenants int) (*cfapitest.Server, string) {
	t.Helper()
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{})
	if err := emu.Seed(cfapitest.DefaultAccount, []string{"customers"}, tenants); err != nil {
		t.Fatal(err)
	}
	return emu, base
}

// events returns one patch event per tenant that adds a plain_text binding.
func events(tenants int, binding string) string {
	var b strings.Builder
	for i := 1; i <= tenants; i++ {
		fmt.Fprintf(&b, `{"schema":"bindings.change/v1","id":"deploy-%s-%d","account_id":%q,"dispatch_namespace":"customers","script":%q,"generation":1,"op":"patch","upsert":[{"type":"plain_text","name":%q,"text":"on"}]}`+"\n",
			binding, i, cfapitest.DefaultAccount, cfapitest.TenantName(i), binding)
	}
	return b.String()
}

// promServer is a real Prometheus server (the prometheus binary) with a
// temporary store.
type promServer struct {
	*process
	addr string
}

// startPrometheus starts prometheus with the alert rules loaded, scraping
// target (host:port of a /metrics endpoint, as job "reconciler") every
// second when target is not empty, and waits until it is ready.
func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin := tool(t, "prometheus")
	rules, err := filepath.Abs("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - %q\n", rules)
	if target != "" {
		cfg += fmt.Sprintf("scrape_configs:\n  - job_name: reconciler\n    static_configs:\n      - targets: [%q]\n", target)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &promServer{addr: testutil.FreeAddr(t)}
	p.process = start(t, os.Environ(), bin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+p.addr,
		"--log.level=warn")
	testutil.Eventually(t, 30*time.Second, func() bool {
		if p.cmd.ProcessState != nil {
			t.Fatalf("prometheus exited early:\n%s", p.out.String())
		}
		code, _ := httpGet(p.addr, "/-/ready")
		return code == http.StatusOK
	}, "prometheus ready; log:\n%s", p.out)
	return p
}

// promResult is the data of a Prometheus HTTP API answer.
type promResult struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Value  []any             `json:"value"`  // instant: [time, "value"]
		Values [][]any           `json:"values"` // range
	} `json:"result"`
}

// api calls the Prometheus HTTP API and returns its data, or the error
// Prometheus gave (a bad query is an error, not a test failure, so that
// callers can say which query).
func (p *promServer) api(path string, params url.Values) (json.RawMessage, error) {
	code, body := httpGet(p.addr, path+"?"+params.Encode())
	var env struct {
		Status    string          `json:"status"`
		Data      json.RawMessage `json:"data"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return nil, fmt.Errorf("HTTP %d: %s", code, body)
	}
	if env.Status != "success" {
		return nil, fmt.Errorf("%s: %s", env.ErrorType, env.Error)
	}
	return env.Data, nil
}

// query evaluates expr now and returns the sum of the values of the
// result's series, and how many series there were.
func (p *promServer) query(expr string) (sum float64, series int, err error) {
	data, err := p.api("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return 0, 0, err
	}
	var res promResult
	if err := json.Unmarshal(data, &res); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", data, err)
	}
	for _, s := range res.Result {
		if len(s.Value) != 2 {
			continue
		}
		str, _ := s.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("value %q: %w", str, err)
		}
		sum += v
	}
	return sum, len(res.Result), nil
}
