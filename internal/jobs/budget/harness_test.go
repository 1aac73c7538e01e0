package budget_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"github.com/reconciler/reconciler/internal/jobs/budget"
)

const (
	account = cfapitest.DefaultAccount
	ns      = "customers"
	scripts = 16
)

// startNATS starts an embedded JetStream server on a random port with a
// temporary store and returns its URL.
func startNATS(t testing.TB) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

// startAPI starts an emulator that requires token and enforces a strict
// sliding window of budget requests per window, blocking the token for a
// window when it is exceeded, as the real API does. Its answers carry no
// Ratelimit headers (as behind a proxy that strips them): the budget alone
// keeps the window, as it did before the API sent them.
func startAPI(t testing.TB, token string, budget int, window time.Duration) (*cfapitest.Server, string) {
	t.Helper()
	return startAPIWith(t, cfapitest.Options{
		Token: token, RateLimit: budget, RateWindow: window, RateSliding: true, OmitRateHeaders: true,
	})
}

// startAPIWith starts an emulator with opts (seeded; a strict sliding
// window when opts set a rate limit) and the test's scripts.
func startAPIWith(t testing.TB, opts cfapitest.Options) (*cfapitest.Server, string) {
	t.Helper()
	opts.Seed = 1
	srv, base := cfapitest.NewTestServer(t, opts)
	t.Cleanup(func() { srv.SetOtherToolRate(0) })
	if err := srv.Seed(account, []string{ns}, scripts); err != nil {
		t.Fatal(err)
	}
	return srv, base
}

// connectJS connects to NATS at natsURL for the rest of the test.
func connectJS(t testing.TB, natsURL string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
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

// ensureBucket creates the budget bucket as `run` would.
func ensureBucket(t testing.TB, natsURL string) {
	t.Helper()
	src, err := budget.Ensure(context.Background(), connectJS(t, natsURL), budget.Config{Credential: "setup", Budget: 10, Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_ = src.Close()
}

// proc is one reconciler "process": its own NATS connection, shared
// budget source, limiter (configured with the full budget), HTTP transport
// and API client.
type proc struct {
	name   string
	nc     *nats.Conn
	src    *budget.Source
	lim    *ratelimit.Limiter
	client *cfapi.Client

	released            atomic.Int64 // attempts the limiter let go
	releasedWhilePaused atomic.Int64 // ... while this process knew of a pause
	rateLimited         atomic.Int64 // 429s this process got
}

func newProc(t testing.TB, name, natsURL, apiBase, token string, cfg budget.Config) *proc {
	t.Helper()
	nc, err := nats.Connect(natsURL, nats.Name(name), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Credential = token
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Named(name)
	}
	src, err := budget.Open(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	lim, err := ratelimit.NewSharedLimiter(src, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, nc: nc, src: src, lim: lim}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	p.client, err = cfapi.New(cfapi.Config{
		BaseURL: apiBase, Token: token, Limiter: lim,
		HTTPClient: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		Retry:      cfapi.RetryPolicy{MaxAttempts: 1},
		Hooks: cfapi.Hooks{
			BudgetWait: func(string, time.Duration) {
				p.released.Add(1)
				if lim.Paused() {
					p.releasedWhilePaused.Add(1)
				}
			},
			RateLimited: func(string, time.Duration) { p.rateLimited.Add(1) },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = src.Close()
		nc.Close()
		tr.CloseIdleConnections()
	})
	return p
}

// hammer runs goroutines that read settings through the client until ctx
// ends. wg tracks them.
func (p *proc) hammer(ctx context.Context, wg *sync.WaitGroup, goroutines int) {
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				ref := cfapi.ScriptRef{AccountID: account, Namespace: ns, Script: cfapitest.TenantName(1 + (g+i)%scripts)}
				_, _ = p.client.GetSettings(ctx, ref) // 429s are counted by the emulator
			}
		}()
	}
}

// figures are what the emulator measured over a run.
type figures struct {
	requests    int
	peak        int // most requests in any window
	rateLimited int // 429s of the rate limit
	throttled   int // all 429s
	perSecond   float64
}

// measure waits until the emulator has answered every request and returns
// its figures; the rate is taken over all arrivals.
func measure(t testing.TB, srv *cfapitest.Server, window time.Duration) figures {
	return measureBetween(t, srv, window, time.Time{}, time.Time{})
}

// measureBetween is measure with the rate taken over arrivals in
// [from, to) (zero times: unbounded).
func measureBetween(t testing.TB, srv *cfapitest.Server, window time.Duration, from, to time.Time) figures {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Stats().Total != len(srv.RequestLog()) {
		if time.Now().After(deadline) {
			t.Fatal("emulator requests still in flight")
		}
		time.Sleep(time.Millisecond)
	}
	st := srv.Stats()
	f := figures{requests: st.Total, peak: st.MaxRequestsInWindow(window), rateLimited: st.RateLimited, throttled: st.Throttled}
	var arr []time.Time
	for _, a := range st.Arrivals() {
		if !a.Before(from) && (to.IsZero() || a.Before(to)) {
			arr = append(arr, a)
		}
	}
	if len(arr) > 1 {
		f.perSecond = float64(len(arr)-1) / arr[len(arr)-1].Sub(arr[0]).Seconds()
	}
	return f
}

// sumStats adds the sources' counters.
func sumStats(ps ...*proc) budget.Stats {
	var sum budget.Stats
	for _, p := range ps {
		st := p.src.Stats()
		sum.Reservations += st.Reservations
		sum.Reserved += st.Reserved
		sum.Conflicts += st.Conflicts
		sum.Errors += st.Errors
		sum.CASTime += st.CASTime
		sum.Granted += st.Granted
		sum.Expired += st.Expired
		sum.Dropped += st.Dropped
		sum.PausesSent += st.PausesSent
		sum.PausesSeen += st.PausesSeen
		sum.MaxLate = max(sum.MaxLate, st.MaxLate)
	}
	return sum
}

// proxy is a TCP proxy to a NATS server that the test can cut: while cut
// it closes every connection and refuses new ones (accepts and closes).
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns []net.Conn
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.Cut() })
	go p.serve()
	return p
}

func (p *proxy) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		go func() { _, _ = io.Copy(c, up); c.Close() }()
	}
}

// Cut closes every proxied connection and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Restore lets connections through again.
func (p *proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}
