//go:build chaos

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/testutil"
)

const (
	acct  = cfapitest.DefaultAccount
	token = "chaos-api-token-9c1f"
)

// bins are the binaries under test, built once by TestMain.
var bins struct{ dir, reconciler, natsServer string }

// seed makes the random choices of a run repeatable (CHAOS_SEED).
var seed uint64

func TestMain(m *testing.M) {
	seed = rand.Uint64()
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	dir, err := os.MkdirTemp("", "reconciler-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.reconciler = filepath.Join(dir, "reconciler")
	bins.natsServer = filepath.Join(dir, "nats-server")
	root := moduleRoot()
	for _, b := range [][]string{
		{"build", "-o", bins.reconciler, "./cmd/reconciler"},
		{"build", "-o", bins.natsServer, "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", b...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "chaos: go %s: %v\n", strings.Join(b, " "), err)
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "chaos: binaries in %s, seed %d (CHAOS_SEED=%d repeats the random choices)\n", dir, seed, seed)
	code := m.Run()
	printTable(os.Stdout)
	if code == 0 && os.Getenv("CHAOS_KEEP") == "" {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "chaos: logs kept in %s\n", dir)
	}
	os.Exit(code)
}

func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		panic(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// only skips a scenario not named in CHAOS_ONLY (when set).
func only(t *testing.T, name string) {
	if o := os.Getenv("CHAOS_ONLY"); o != "" && !strings.Contains(","+o+",", ","+name+",") {
		t.Skipf("CHAOS_ONLY=%s", o)
	}
}

// --- The table ---------------------------------------------------------------

type row struct{ scenario, measure, value, target, met string }

var (
	tableMu sync.Mutex
	table   []row
)

// figure records one line of the table. ok is whether the target is met;
// with no target the line is a plain figure.
func figure(scenario, measure string, value any, target string, ok bool) {
	met := "yes"
	switch {
	case target == "":
		met = ""
	case !ok:
		met = "NO"
	}
	tableMu.Lock()
	table = append(table, row{scenario, measure, fmt.Sprint(value), target, met})
	tableMu.Unlock()
}

func printTable(w io.Writer) {
	tableMu.Lock()
	defer tableMu.Unlock()
	if len(table) == 0 {
		return
	}
	fmt.Fprintf(w, "\nchaos suite (seed %d, %d CPUs, %s)\n", seed, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(w, "%-12s %-66s %14s %14s %s\n", "scenario", "measure", "value", "target", "met")
	for _, r := range table {
		fmt.Fprintf(w, "%-12s %-66s %14s %14s %s\n", r.scenario, r.measure, r.value, r.target, r.met)
	}
}

// --- Processes -------------------------------------------------------------

// proc is a child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
	// peakRSS is the process's peak resident set (VmHWM), read just
	// before it was signalled.
	peakRSS int64
}

func startProc(t *testing.T, name, logPath string, env []string, bin string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() { p.signal(syscall.SIGKILL) })
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// signal sends sig and waits for the process to end.
func (p *proc) signal(sig syscall.Signal) {
	if !p.running() {
		return
	}
	p.peakRSS = max(p.peakRSS, vmHWM(p.cmd.Process.Pid))
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// vmHWM returns the peak resident set size of process pid in bytes (0
// when unknown).
func vmHWM(pid int) int64 { return vmField(pid, "VmHWM:") }

// vmField returns a size field of /proc/<pid>/status ("VmHWM:", "VmRSS:")
// in bytes (0 when unknown).
func vmField(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS sets process pid's peak resident set (VmHWM) to its
// current one (Linux: 5 written to /proc/<pid>/clear_refs).
func resetPeakRSS(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// --- The world -------------------------------------------------------------

// world is one scenario's setup: a nats-server process on its own store,
// the emulator in this process, the test's own NATS connection, and
// `reconciler run` children.
type world struct {
	t        *testing.T
	name     string
	dir      string
	natsAddr string
	natsURL  string
	nats     *proc
	natsRuns int
	emu      *cfapitest.Server
	apiURL   string
	nc       *nats.Conn
	js       jetstream.JetStream

	rate        int // API requests per second, for the reconciler and the emulator
	ackWait     time.Duration
	metricsAddr string
	rec         *proc
	recProcs    []*proc
	recRuns     int
	recLogs     []string
}

func newWorld(t *testing.T, name string, rate int) *world {
	t.Helper()
	w := &world{t: t, name: name, dir: filepath.Join(bins.dir, name), rate: rate,
		ackWait: envDuration("CHAOS_ACK_WAIT", 20*time.Second)}
	if err := os.MkdirAll(filepath.Join(w.dir, "store"), 0o755); err != nil {
		t.Fatal(err)
	}
	w.natsAddr = testutil.FreeAddr(t)
	w.natsURL = "nats://" + w.natsAddr
	w.metricsAddr = testutil.FreeAddr(t)
	w.startNATS()
	var err error
	w.nc, err = nats.Connect(w.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.nc.Close)
	w.js, _ = jetstream.New(w.nc, jetstream.WithPublishAsyncMaxPending(4096))

	w.emu = cfapitest.New(cfapitest.Options{Token: token, Seed: seed})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.apiURL = "http://" + ln.Addr().String() + w.emu.Prefix()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.emu.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	// The emulator enforces the same budget as the reconciler's, strictly
	// (a sliding window that blocks the token when exceeded).
	w.emu.SetSlidingRateLimit(rate, time.Second, time.Second)
	return w
}

// startNATS starts the nats-server on the world's store and address (the
// same every time), with the NATS defaults (max_payload 1 MiB).
func (w *world) startNATS() {
	w.t.Helper()
	w.natsRuns++
	host, port, _ := net.SplitHostPort(w.natsAddr)
	w.nats = startProc(w.t, "nats-server", filepath.Join(w.dir, "nats-server.log"), os.Environ(), bins.natsServer,
		"-js", "-sd", filepath.Join(w.dir, "store"), "-a", host, "-p", port, "-n", "chaos-"+w.name)
	testutil.Eventually(w.t, 30*time.Second, func() bool {
		nc, err := nats.Connect(w.natsURL, nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err == nil
	}, "nats-server ready on %s", w.natsAddr)
}

// startReconciler starts `reconciler run` against the world and waits
// until /readyz answers ready.
func (w *world) startReconciler(extra ...string) *proc {
	w.t.Helper()
	w.recRuns++
	logPath := filepath.Join(w.dir, fmt.Sprintf("reconciler-%02d.log", w.recRuns))
	w.recLogs = append(w.recLogs, logPath)
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"CLOUDFLARE_API_BASE_URL=" + w.apiURL, "CLOUDFLARE_API_TOKEN=" + token,
	}
	logLevel := os.Getenv("CHAOS_LOG_LEVEL")
	if logLevel == "" {
		logLevel = "info"
	}
	args := append([]string{"run", "--nats-url", w.natsURL, "--metrics-addr", w.metricsAddr,
		"--rate-limit", fmt.Sprintf("%d/1s", w.rate), "--ack-wait", w.ackWait.String(),
		"--log-format", "json", "--log-level", logLevel, "--shutdown-timeout", "10s"}, extra...)
	w.rec = startProc(w.t, "reconciler", logPath, env, bins.reconciler, args...)
	w.recProcs = append(w.recProcs, w.rec)
	testutil.Eventually(w.t, 60*time.Second, func() bool {
		if !w.rec.running() {
			w.t.Fatalf("reconciler run exited at start; log %s:\n%s", logPath, tail(logPath, 20))
		}
		return w.ready()
	}, "reconciler ready on %s", w.metricsAddr)
	return w.rec
}

// ready reports whether the reconciler's /readyz answers ready.
func (w *world) ready() bool {
	body, code, err := httpGet("http://" + w.metricsAddr + "/readyz")
	return err == nil && code == 200 && strings.HasPrefix(body, "ready")
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

func httpGet(url string) (string, int, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// metric sums the samples of a metric family of the running reconciler
// whose labels contain every one of the given label pairs (name="value").
func (w *world) metric(name string, labels ...string) float64 {
	body, _, err := httpGet("http://" + w.metricsAddr + "/metrics")
	if err != nil {
		return -1
	}
	total := 0.0
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			f = strings.Fields(rest)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

// --- Events and expected state ----------------------------------------------

// event is one published event and what it asks for.
type event struct {
	id      string
	msgID   string
	script  string
	ns      string
	gen     uint64
	upsert  []wire.Binding
	remove  []string
	subject string
	body    []byte
}

func newEvent(id, ns, script string, gen uint64, upsert []wire.Binding, remove []string) *event {
	m := map[string]any{"schema": "bindings.change/v1", "id": id, "account_id": acct, "dispatch_namespace": ns,
		"script": script, "generation": gen, "op": "patch"}
	if len(upsert) > 0 {
		m["upsert"] = upsert
	}
	if len(remove) > 0 {
		m["remove"] = remove
	}
	body, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return &event{id: id, msgID: id, script: script, ns: ns, gen: gen, upsert: upsert, remove: remove,
		subject: "bindings." + acct + "." + ns + "." + script, body: body}
}

// publish sends events asynchronously with their Nats-Msg-Id and waits
// for the stream's acknowledgements, retrying what failed (NATS may be
// restarting; the duplicate window drops what was stored already). It
// may be called from any goroutine.
func (w *world) publish(evs []*event) error {
	pending := evs
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == 100 {
			return fmt.Errorf("%d events could not be published", len(pending))
		}
		var failed []*event
		futures := make([]jetstream.PubAckFuture, len(pending))
		for i, e := range pending {
			m := nats.NewMsg(e.subject)
			m.Data = e.body
			m.Header.Set(jetstream.MsgIDHeader, e.msgID)
			f, err := w.js.PublishMsgAsync(m)
			if err != nil {
				failed = append(failed, e)
				continue
			}
			futures[i] = f
		}
		for i, f := range futures {
			if f == nil {
				continue
			}
			select {
			case <-f.Ok():
			case <-f.Err():
				failed = append(failed, pending[i])
			case <-time.After(30 * time.Second):
				failed = append(failed, pending[i])
			}
		}
		if len(failed) > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		pending = failed
	}
	return nil
}

// expected returns what each script must hold at the end: its initial
// bindings with the events folded in (per binding, the operation with the
// greatest (generation, id) wins), as canonical JSON by name.
func expected(initial map[string]map[string]string, evs []*event) map[string]map[string]string {
	sorted := append([]*event(nil), evs...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if sorted[i].gen != sorted[j].gen {
			return sorted[i].gen < sorted[j].gen
		}
		return sorted[i].id < sorted[j].id
	})
	out := map[string]map[string]string{}
	for s, bs := range initial {
		m := map[string]string{}
		for n, v := range bs {
			m[n] = v
		}
		out[s] = m
	}
	for _, e := range sorted {
		m := out[e.script]
		for _, b := range e.upsert {
			m[b.Name()] = string(b.CanonicalJSON())
		}
		for _, n := range e.remove {
			delete(m, n)
		}
	}
	return out
}

// live returns a script's bindings in the emulator as canonical JSON by
// name (secret text included: the emulator keeps it).
func (w *world) live(ns, script string) map[string]string {
	bs, _ := w.emu.Bindings(acct, ns, script)
	m := make(map[string]string, len(bs))
	for _, b := range bs {
		m[b.Name()] = string(b.CanonicalJSON())
	}
	return m
}

// converged counts the scripts whose live bindings equal want.
func (w *world) converged(ns string, want map[string]map[string]string) (n int, firstBad string) {
	for s, exp := range want {
		got := w.live(ns, s)
		if equalMaps(got, exp) {
			n++
		} else if firstBad == "" || s < firstBad {
			firstBad = s
		}
	}
	return n, firstBad
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// diff describes how got differs from want.
func diff(got, want map[string]string) string {
	var out []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			out = append(out, "missing "+k)
		} else if g != v {
			out = append(out, fmt.Sprintf("%s = %s, want %s", k, cfapi.Truncate(g, 80), cfapi.Truncate(v, 80)))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, "extra "+k)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// consumerState returns the live consumer's pending and unacknowledged
// counts.
func (w *world) consumerState() (pending uint64, ackPending int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := w.js.Consumer(ctx, "BINDINGS", "reconciler")
	if err != nil {
		return 0, 0, err
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	return ci.NumPending, ci.NumAckPending, nil
}

// waitSettled waits until the consumer has nothing pending or
// unacknowledged, and returns how long that took.
func (w *world) waitSettled(timeout time.Duration) time.Duration {
	w.t.Helper()
	start := time.Now()
	var last string
	testutil.Eventually(w.t, timeout, func() bool {
		p, a, err := w.consumerState()
		last = fmt.Sprintf("pending=%d ack_pending=%d err=%v", p, a, err)
		return err == nil && p == 0 && a == 0
	}, "consumer settled (%v)", stringer(func() string { return last }))
	return time.Since(start)
}

type stringer func() string

func (s stringer) String() string { return s() }

// deadLetters lists the dead letters with the real binary's
// `reconciler dlq list --output json`.
func (w *world) deadLetters() []dlqEntry {
	w.t.Helper()
	cmd := exec.Command(bins.reconciler, "dlq", "list", "--output", "json", "--nats-url", w.natsURL, "--log-level", "error")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		w.t.Fatalf("reconciler dlq list: %v: %s", err, stderr.String())
	}
	var es []dlqEntry
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // the summary line ("N dead letters")
		}
		var e dlqEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			w.t.Fatalf("dlq list line %q: %v", line, err)
		}
		e.raw = line
		es = append(es, e)
	}
	return es
}

// dlqReplay replays the dead letters of the comma-separated stream
// sequences with the real binary's `reconciler dlq replay`.
func (w *world) dlqReplay(seqs string) {
	w.t.Helper()
	cmd := exec.Command(bins.reconciler, "dlq", "replay", "--seq", seqs, "--nats-url", w.natsURL, "--log-level", "error")
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("reconciler dlq replay --seq %s: %v: %s", seqs, err, out)
	}
}

type dlqEntry struct {
	Seq    uint64 `json:"seq"`
	Record struct {
		Event     json.RawMessage `json:"event"`
		Reason    string          `json:"reason"`
		Error     string          `json:"error"`
		Attempts  int             `json:"attempts"`
		EventID   string          `json:"event_id"`
		Subject   string          `json:"subject"`
		StreamSeq uint64          `json:"stream_seq"`
	} `json:"record"`
	raw string
}

// logsContain counts the reconciler log lines (every run of the world)
// that contain any of the needles.
func (w *world) logsContain(needles ...string) int {
	n := 0
	for _, p := range w.recLogs {
		data, _ := os.ReadFile(p)
		for _, line := range strings.Split(string(data), "\n") {
			for _, s := range needles {
				if s != "" && strings.Contains(line, s) {
					n++
					break
				}
			}
		}
	}
	return n
}

// writes counts the writes the emulator carried out (2xx answers of write
// endpoints) and the write attempts it saw in total.
func (w *world) writes() (done, attempts int) {
	for _, r := range w.emu.RequestLog() {
		if r.Method == http.MethodGet {
			continue
		}
		attempts++
		if r.Status >= 200 && r.Status < 300 {
			done++
		}
	}
	return done, attempts
}

// peakRSS returns the largest peak resident set of the world's reconciler
// processes (the running one is read now).
func (w *world) peakRSS() int64 {
	var peak int64
	for _, p := range w.recProcs {
		if p.running() {
			p.peakRSS = max(p.peakRSS, vmHWM(p.cmd.Process.Pid))
		}
		peak = max(peak, p.peakRSS)
	}
	return peak
}
