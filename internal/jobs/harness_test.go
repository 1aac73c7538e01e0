package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	promtestutil "github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/event"
	"github.com/reconciler/reconciler/internal/jobs/natsembed"
	"github.com/reconciler/reconciler/internal/jobs/state"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/planner"
	"github.com/reconciler/reconciler/internal/testutil"
	"github.com/reconciler/reconciler/metrics"
)

const acct = cfapitest.DefaultAccount

// harness is a real embedded nats-server (random port, temporary store),
// the API emulator, and runners started on demand.
type harness struct {
	t        *testing.T
	storeDir string
	srv      natsServer
	url      string
	nc       *nats.Conn
	js       jetstream.JetStream
	emu      *cfapitest.Server
	baseURL  string
	cfg      Config
	planner  *planner.Planner
	limiter  *ratelimit.Limiter
	rec      *recordingTransport
	opts     harnessOpts
}

// recordingTransport keeps the body of every request the client sends.
type recordingTransport struct {
	mu     sync.Mutex
	bodies []string
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(data))
		rt.mu.Lock()
		rt.bodies = append(rt.bodies, r.Method+" "+r.URL.Path+"\n"+string(data))
		rt.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// sentBodies returns the bodies sent so far and forgets them.
func (h *harness) sentBodies() []string {
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	out := h.rec.bodies
	h.rec.bodies = nil
	return out
}

type harnessOpts struct {
	emu    cfapitest.Options
	budget int
	window time.Duration
	cfg    Config
	// wrapAPI, when set, wraps the client every runner uses.
	wrapAPI func(API) API
	// natsDefaults starts the server with NATS's default max_payload
	// (1 MiB), as an external server has, instead of the embedded 8 MiB.
	natsDefaults bool
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	h := &harness{t: t, storeDir: t.TempDir(), rec: &recordingTransport{}, opts: o}
	h.startServer()
	h.emu, h.baseURL = cfapitest.NewTestServer(t, o.emu)
	if err := h.emu.CreateNamespace(acct, "customers"); err != nil {
		t.Fatal(err)
	}
	var err error
	h.planner, err = planner.New(planner.Options{FingerprintKey: []byte("test-fingerprint-key")})
	if err != nil {
		t.Fatal(err)
	}
	if o.budget == 0 {
		o.budget, o.window = 100000, time.Second
	}
	h.limiter, err = ratelimit.NewLimiter(o.budget, o.window, 8)
	if err != nil {
		t.Fatal(err)
	}
	h.cfg = o.cfg
	if h.cfg.AckWait == 0 {
		h.cfg.AckWait = 5 * time.Second
	}
	if h.cfg.NakDelay == 0 {
		h.cfg.NakDelay = 100 * time.Millisecond
		h.cfg.MaxNakDelay = time.Second
	}
	if h.cfg.Concurrency == 0 {
		h.cfg.Concurrency = 8
	}
	if h.cfg.LeaseTTL == 0 {
		h.cfg.LeaseTTL = 5 * time.Second
	}
	if h.cfg.ShutdownTimeout == 0 {
		h.cfg.ShutdownTimeout = 10 * time.Second
	}
	return h
}

func (h *harness) startServer() {
	h.t.Helper()
	listen := "127.0.0.1:-1"
	if h.url != "" {
		listen = strings.TrimPrefix(h.url, "nats://")
	}
	var s natsServer
	var err error
	if h.opts.natsDefaults {
		s, err = startPlainServer(h.storeDir, listen)
	} else {
		s, err = natsembed.Start(h.storeDir, listen)
	}
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv = s
	h.url = s.ClientURL()
	h.nc, err = nats.Connect(h.url, nats.MaxReconnects(-1))
	if err != nil {
		h.t.Fatal(err)
	}
	h.js, err = jetstream.New(h.nc)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() {
		h.nc.Close()
		s.Shutdown()
	})
}

// natsServer is a running test server.
type natsServer interface {
	ClientURL() string
	Shutdown()
}

// plainServer is a nats-server with the NATS defaults (max_payload 1 MiB).
type plainServer struct{ *server.Server }

func (p plainServer) Shutdown() { p.Server.Shutdown(); p.Server.WaitForShutdown() }

func startPlainServer(dir, listen string) (natsServer, error) {
	host, port, _ := net.SplitHostPort(listen)
	p, _ := strconv.Atoi(port)
	s, err := server.NewServer(&server.Options{Host: host, Port: p, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, err
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		return nil, fmt.Errorf("server not ready")
	}
	return plainServer{s}, nil
}

// stopServer kills the server without any drain (a crash).
func (h *harness) stopServer() {
	h.nc.Close()
	h.srv.Shutdown()
}

// crash kills the server first, so no ack, nak or KV write of the dying
// runner gets through, then stops the runner: what it had in flight is
// simply lost, as in a crash of both.
func (h *harness) crash(rn *runner) {
	h.stopServer()
	rn.nc.Close()
	rn.cancel()
	<-rn.done
	rn.cancel = nil
}

func (h *harness) client(hooks cfapi.Hooks) *cfapi.Client {
	h.t.Helper()
	c, err := cfapi.New(cfapi.Config{BaseURL: h.baseURL, Token: "test-token", Limiter: h.limiter, Hooks: hooks,
		Retry:      cfapi.RetryPolicy{MaxAttempts: 4, InitialInterval: 20 * time.Millisecond, MaxInterval: 200 * time.Millisecond, RateLimitPause: 2 * time.Second},
		HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: h.rec}})
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// runner is one running Runner.
type runner struct {
	r      *Runner
	m      *metrics.Metrics
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
	nc     *nats.Conn
}

// startRunner sets up the streams and runs a Runner on its own connection
// until stop.
func (h *harness) startRunner(owner string) *runner {
	h.t.Helper()
	return h.startRunnerVia(owner, h.url)
}

// startRunnerVia starts a runner connected to NATS at url (a proxy).
func (h *harness) startRunnerVia(owner, url string) *runner {
	h.t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1))
	if err != nil {
		h.t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := h.cfg
	cfg.Owner = owner
	res, err := state.EnsureStreams(ctx, js, cfg.SetupConfig, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, event.ReasonLabels()...)
	log := zaptest.NewLogger(h.t, zaptest.Level(zap.WarnLevel)).Named(owner)
	var api API = h.client(m.APIHooks())
	if h.opts.wrapAPI != nil {
		api = h.opts.wrapAPI(api)
	}
	r := NewRunner(cfg, res, api, h.planner, m, log)
	rn := &runner{r: r, m: m, reg: reg, cancel: cancel, done: make(chan error, 1), nc: nc}
	go func() { rn.done <- r.Run(ctx) }()
	h.t.Cleanup(func() { rn.stop(h.t) })
	return rn
}

func (rn *runner) stop(t *testing.T) {
	if rn.cancel == nil {
		return
	}
	rn.cancel()
	rn.cancel = nil
	select {
	case <-rn.done:
	case <-time.After(30 * time.Second):
		t.Error("runner did not stop within 30s")
	}
	rn.nc.Close()
}

// setup creates the streams without running anything (for publishing
// before a runner starts).
func (h *harness) setup() *state.Resources {
	h.t.Helper()
	res, err := state.EnsureStreams(context.Background(), h.js, h.cfg.SetupConfig, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	return res
}

// publish sends one event with Nats-Msg-Id = its id (or msgID if given).
func (h *harness) publish(ev map[string]any, msgID ...string) {
	h.t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		h.t.Fatal(err)
	}
	h.publishRaw(subjectOf(ev), data, append(msgID, fmt.Sprint(ev["id"]))[0])
}

func (h *harness) publishRaw(subject string, data []byte, msgID string) {
	h.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		h.t.Fatalf("publish %s: %v", subject, err)
	}
}

func subjectOf(ev map[string]any) string {
	ns, _ := ev["dispatch_namespace"].(string)
	if ns == "" {
		ns = event.NoNamespace
	}
	return fmt.Sprintf("bindings.%s.%s.%s", ev["account_id"], ns, ev["script"])
}

// newEvent builds an event map for script in namespace ns.
func newEvent(id, ns, script string, gen uint64, op string, fields map[string]any) map[string]any {
	ev := map[string]any{"schema": event.SchemaV1, "id": id, "account_id": acct, "script": script, "op": op}
	if ns != "" {
		ev["dispatch_namespace"] = ns
	}
	if gen > 0 {
		ev["generation"] = gen
	}
	for k, v := range fields {
		ev[k] = v
	}
	return ev
}

func b(raw string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		panic(err)
	}
	return m
}

// seedScript creates a script in the emulator with the given bindings.
func (h *harness) seedScript(ns, name string, bindings ...string) {
	h.t.Helper()
	var bs []wire.Binding
	for _, raw := range bindings {
		bs = append(bs, wire.MustParseBinding(raw))
	}
	err := h.emu.PutScript(acct, ns, name, cfapitest.Script{
		MainModule: "index.js",
		Modules:    []cfapitest.Module{{Name: "index.js", ContentType: "application/javascript+module", Data: []byte("export default { fetch() { return new Response('ok') } }")}},
		Bindings:   bs,
		Settings:   map[string]json.RawMessage{"compatibility_date": json.RawMessage(`"2025-01-01"`)},
	})
	if err != nil {
		h.t.Fatal(err)
	}
}

// stored returns the emulator's stored bindings of a script by name, as
// raw JSON strings.
func (h *harness) stored(ns, script string) map[string]string {
	bs, ok := h.emu.Bindings(acct, ns, script)
	if !ok {
		return nil
	}
	out := map[string]string{}
	for _, b := range bs {
		out[b.Name()] = canon(string(b.Raw()))
	}
	return out
}

// canon returns a binding's canonical JSON (sorted keys, secrets included),
// so tests compare values, not key order.
func canon(raw string) string {
	return string(wire.MustParseBinding(raw).CanonicalJSON())
}

// eventually polls cond until it holds or the deadline passes; the
// failure shows the state cond last reported.
func (h *harness) eventually(what string, timeout time.Duration, cond func() (bool, string)) {
	h.t.Helper()
	var last string
	testutil.Eventually(h.t, timeout, func() bool {
		ok, ds := cond()
		last = ds
		return ok
	}, "%s; last state: %v", what, stringer(func() string { return last }))
}

// stringer prints what its function returns when formatted.
type stringer func() string

func (s stringer) String() string { return s() }

// drained reports whether every event published so far has been
// delivered and acknowledged or terminated: the consumer's ack floor has
// reached the stream's last sequence.
func (h *harness) drained() (bool, string) {
	ctx := context.Background()
	st, err := h.js.Stream(ctx, "BINDINGS")
	if err != nil {
		return false, err.Error()
	}
	si, err := st.Info(ctx)
	if err != nil {
		return false, err.Error()
	}
	ci, err := st.Consumer(ctx, "reconciler")
	if err != nil {
		return false, err.Error()
	}
	info, err := ci.Info(ctx)
	if err != nil {
		return false, err.Error()
	}
	last := si.State.LastSeq
	return info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last,
		fmt.Sprintf("last=%d ack_floor=%d pending=%d ack_pending=%d redelivered=%d", last, info.AckFloor.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered)
}

// waitDrained waits until every event is acknowledged or terminated.
func (h *harness) waitDrained(timeout time.Duration) {
	h.t.Helper()
	h.eventually("all events settled", timeout, h.drained)
}

// deadLetters lists the DLQ.
func (h *harness) deadLetters() []tools.DLQEntry {
	h.t.Helper()
	es, err := tools.ListDeadLetters(context.Background(), h.js, "BINDINGS_DLQ", "", 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return es
}

// sumOf adds a counter vector's values over the given label values.
func sumOf(vec *prometheus.CounterVec, values ...string) float64 {
	total := 0.0
	for _, v := range values {
		total += promtestutil.ToFloat64(vec.WithLabelValues(v))
	}
	return total
}

var (
	allOutcomes = []string{metrics.OutcomeApplied, metrics.OutcomeNoop, metrics.OutcomeStale, metrics.OutcomeDeadLettered}
	allResults  = []string{metrics.ResultApplied, metrics.ResultNoop, metrics.ResultTransient, metrics.ResultPermanent, metrics.ResultLeaseBusy}
)

func u64(v uint64) *uint64 { return &v }

// isWaiting reports whether t has events of key waiting.
func isWaiting(t *waitTable, key string) bool {
	rev, _ := t.snapshot(key)
	return rev > 0
}
