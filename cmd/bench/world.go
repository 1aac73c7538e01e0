package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
)

// world is the benchmark's world: a NATS server and the emulator in this
// process, and the `reconciler` binary's `run` and `backfill` as children.
type world struct {
	exe     string // the reconciler binary
	dir     string
	stderr  io.Writer
	ns      *server.Server
	natsURL string
	emu     *cfapitest.Server
	apiURL  string
	stopEmu context.CancelFunc
	nc      *nats.Conn
	js      jetstream.JetStream
	http    *http.Client

	logLevel, logFormat string // of the children

	mu   sync.Mutex
	runs []*runChild
}

// runChild is one `reconciler run` child process.
type runChild struct {
	cmd     *exec.Cmd
	metrics string // host:port of its /metrics
	done    chan struct{}
}

// childConfig is what a child process is started with: the budget
// (--rate-limit; "" = unlimited), the budget key every child of a
// scenario shares (--budget-key, so that no identity lookup spends the
// API's budget and scenarios never share a budget), the API token and
// more flags.
type childConfig struct {
	rate, budgetKey, token string
	extra                  []string
}

// childArgs are the flags every child gets: the world's addresses, cfg's
// budget and the children's logging.
func (w *world) childArgs(cfg childConfig) []string {
	rate := cfg.rate
	if rate == "" {
		rate = "1000000/1s"
	}
	args := []string{"--nats-url", w.natsURL, "--api-base-url", w.apiURL, "--rate-limit", rate, "--budget-key", cfg.budgetKey,
		"--log-level", w.logLevel, "--log-format", w.logFormat}
	return append(args, cfg.extra...)
}

func newWorld(ctx context.Context, exe string, stderr io.Writer) (*world, error) {
	w := &world{exe: exe, stderr: stderr, http: &http.Client{Timeout: 2 * time.Second}, logLevel: "warn", logFormat: "console"}
	var err error
	if w.dir, err = os.MkdirTemp("", "reconciler-bench-"); err != nil {
		return nil, err
	}
	// A separate NATS (not embedded in the reconciler), with the default
	// 1 MiB max_payload of an external server.
	w.ns, err = server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(w.dir, "nats"), NoLog: true, NoSigs: true})
	if err != nil {
		w.close()
		return nil, err
	}
	w.ns.Start()
	if !w.ns.ReadyForConnections(10 * time.Second) {
		w.close()
		return nil, fmt.Errorf("the benchmark's NATS server did not start")
	}
	w.natsURL = w.ns.ClientURL()
	if w.nc, err = nats.Connect(w.natsURL); err != nil {
		w.close()
		return nil, err
	}
	if w.js, err = jetstream.New(w.nc, jetstream.WithPublishAsyncMaxPending(8192)); err != nil {
		w.close()
		return nil, err
	}
	w.emu = cfapitest.New(cfapitest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		w.close()
		return nil, err
	}
	w.apiURL = "http://" + ln.Addr().String() + w.emu.Prefix()
	emuCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.stopEmu = cancel
	go func() { _ = w.emu.Serve(emuCtx, ln) }()
	return w, nil
}

func (w *world) close() {
	w.stopRuns()
	if w.nc != nil {
		w.nc.Close()
	}
	if w.stopEmu != nil {
		w.stopEmu()
	}
	if w.ns != nil {
		w.ns.Shutdown()
		w.ns.WaitForShutdown()
	}
	_ = os.RemoveAll(w.dir)
}

// childEnv is the environment of a child: this process's, with the API
// token of cfg and without any reconciler setting of the caller's shell
// that would change what is measured.
func childEnv(cfg childConfig) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "RECONCILER_") || strings.HasPrefix(kv, "CLOUDFLARE_") || strings.HasPrefix(kv, "NATS_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "CLOUDFLARE_API_TOKEN="+cfg.token)
}

// startRun starts one more `reconciler run` and waits until it is ready.
func (w *world) startRun(ctx context.Context, cfg childConfig) (*runChild, error) {
	c := &runChild{metrics: freeAddr(), done: make(chan struct{})}
	args := append([]string{"run"}, w.childArgs(cfg)...)
	args = append(args, "--metrics-addr", c.metrics, "--max-writes", "16")
	c.cmd = exec.Command(w.exe, args...)
	c.cmd.Env = childEnv(cfg)
	c.cmd.Stderr = w.stderr
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s run: %w", w.exe, err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	w.mu.Lock()
	w.runs = append(w.runs, c)
	w.mu.Unlock()
	// Ready when /readyz answers.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return nil, fmt.Errorf("reconciler run exited before it was ready (%v)", c.cmd.ProcessState)
		case <-ctx.Done():
			return nil, ctx.Err()
		default:
		}
		if body, err := w.get("http://" + c.metrics + "/readyz"); err == nil && strings.HasPrefix(body, "ready") {
			return c, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, fmt.Errorf("reconciler run did not become ready in 30s")
}

// stopRuns stops every `run` child: SIGINT, then SIGKILL after 30s.
func (w *world) stopRuns() {
	w.mu.Lock()
	runs := w.runs
	w.runs = nil
	w.mu.Unlock()
	for _, c := range runs {
		_ = c.cmd.Process.Signal(os.Interrupt)
	}
	for _, c := range runs {
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
}

// backfillSummary is the JSON line `reconciler backfill --output json`
// ends its output with (the fields the benchmark reads).
type backfillSummary struct {
	Run       string  `json:"run"`
	Scripts   int     `json:"scripts"`
	Changed   int     `json:"changed"`
	Unchanged int     `json:"unchanged"`
	Failed    int     `json:"failed"`
	Seconds   float64 `json:"seconds"`
}

// wall is the run's own duration: from its start on the pipeline (the
// listing included) to the last result, without the process's start.
func (s *backfillSummary) wall() time.Duration {
	return time.Duration(s.Seconds * float64(time.Second))
}

// backfill runs `reconciler backfill` over every script of namespace ns
// with the benchmark's patch (an R2 binding ASSETS) through the
// running `run` children, and returns its summary.
func (w *world) backfill(ctx context.Context, cfg childConfig, ns, runID string) (*backfillSummary, error) {
	patch := filepath.Join(w.dir, "patch.json")
	if err := os.WriteFile(patch, []byte(`{"upsert":[`+assetsBinding+`]}`), 0o644); err != nil {
		return nil, err
	}
	args := append([]string{"backfill"}, w.childArgs(cfg)...)
	args = append(args, "--namespace", ns, "--patch", patch, "--account", cfapitest.DefaultAccount,
		"--run-id", runID, "--output", "json", "--progress", "none")
	cmd := exec.CommandContext(ctx, w.exe, args...)
	cmd.Env = childEnv(cfg)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, w.stderr
	runErr := cmd.Run()
	out := strings.TrimSpace(stdout.String())
	last := out[strings.LastIndex(out, "\n")+1:]
	var sum backfillSummary
	if err := json.Unmarshal([]byte(last), &sum); err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("reconciler backfill: %w", runErr)
		}
		return nil, fmt.Errorf("reconciler backfill: its last line is not the JSON summary: %q: %w", last, err)
	}
	if sum.Failed > 0 {
		return nil, fmt.Errorf("reconciler backfill %s: %d of %d scripts failed", sum.Run, sum.Failed, sum.Scripts)
	}
	if runErr != nil {
		return nil, fmt.Errorf("reconciler backfill: %w", runErr)
	}
	return &sum, nil
}

// assetsBinding is the binding every backfill of the benchmark upserts.
const assetsBinding = `{"type":"r2_bucket","name":"ASSETS","bucket_name":"bench-assets"}`

// procStats reads a child's peak RSS (VmHWM) and CPU time from /proc; both
// are 0 where /proc is not there.
func procStats(c *runChild) (peakRSS int64, cpu time.Duration) {
	pid := c.cmd.Process.Pid
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					peakRSS = kb << 10
				}
			}
		}
	}
	if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(data)
		if f := strings.Fields(s[strings.LastIndex(s, ")")+1:]); len(f) > 12 { // utime and stime: fields 14 and 15 of proc(5)
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			cpu = time.Duration(ut+st) * (time.Second / 100) // clock ticks (USER_HZ = 100)
		}
	}
	return peakRSS, cpu
}

// peakUnacked samples the consumers' unacknowledged messages until stop.
func (w *world) peakUnacked(ctx context.Context, stop <-chan struct{}) *atomic.Int64 {
	var peak atomic.Int64
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			n := int64(0)
			for _, c := range [][2]string{{"BINDINGS", "reconciler"}, {"BINDINGS_BACKFILL", "reconciler_backfill"}} {
				if cons, err := w.js.Consumer(ctx, c[0], c[1]); err == nil {
					if ci, err := cons.Info(ctx); err == nil {
						n += int64(ci.NumAckPending)
					}
				}
			}
			if n > peak.Load() {
				peak.Store(n)
			}
		}
	}()
	return &peak
}

// counter reads one unlabelled metric from a child's /metrics (0 when it
// cannot).
func (w *world) counter(c *runChild, name string) float64 {
	text, err := w.get("http://" + c.metrics + "/metrics")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}

func (w *world) get(url string) (string, error) {
	resp, err := w.http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, resp.Body)
	return buf.String(), err
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}
