package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/jobs/tools"
	"github.com/reconciler/reconciler/internal/testutil"
	"github.com/reconciler/reconciler/internal/testutil/natscluster"
)

// clusterProc is one `reconciler run` child process.
type clusterProc struct {
	name    string
	cmd     *exec.Cmd
	log     *testutil.SyncBuffer
	metrics string // host:port of /metrics and /readyz
	exited  chan struct{}
	err     error // set when exited is closed
}

// startClusterProc starts `reconciler run` (this test binary, re-executed
// as the real program) with env and returns at once, without waiting for
// it to be up.
func startClusterProc(t *testing.T, name string, env map[string]string, args ...string) *clusterProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &clusterProc{name: name, log: &testutil.SyncBuffer{}, metrics: testutil.FreeAddr(t), exited: make(chan struct{})}
	p.cmd = exec.Command(exe, append([]string{"run", "--log-format", "console", "--metrics-addr", p.metrics}, args...)...)
	p.cmd.Env = append(os.Environ(), "RECONCILER_TEST_MAIN=1")
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			if t.Failed() && os.Getenv("CLUSTER_TEST_STACKS") != "" {
				_ = p.cmd.Process.Signal(syscall.SIGQUIT) // the Go runtime prints every goroutine
				select {
				case <-p.exited:
				case <-time.After(10 * time.Second):
				}
			}
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() || os.Getenv("CLUSTER_TEST_LOGS") != "" {
			t.Logf("log of %s:\n%s", p.name, p.log.String())
		}
	})
	return p
}

// alive fails the test when the process has exited.
func (p *clusterProc) alive(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("%s exited (%v):\n%s", p.name, p.err, p.log.String())
	default:
	}
}

// ready returns the status code of /readyz (0 when unreachable) and its
// body.
func (p *clusterProc) ready() (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.metrics + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// counter sums the samples of a metric from /metrics whose labels contain
// every one of labels (e.g. `outcome="applied"`).
func (p *clusterProc) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatalf("%s: /metrics: %v", p.name, err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: metric line %q: %v", p.name, line, err)
		}
		total += v
	}
	return total
}

// stop sends SIGTERM and waits for a clean exit.
func (p *clusterProc) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.err != nil {
			t.Errorf("%s exited with %v after SIGTERM", p.name, p.err)
		}
	case <-time.After(timeout):
		t.Errorf("%s did not exit within %s of SIGTERM", p.name, timeout)
	}
}

// TestClusterTwoProcessesSurviveLeaderLoss runs the configuration the
// README recommends for production: a 3-node JetStream cluster, every
// stream, consumer and bucket with 3 replicas, and two `reconciler run`
// processes sharing one API token. Both processes start at the same
// moment against a cluster that is still forming (only two of its three
// nodes are up, so nothing with 3 replicas can be placed yet): both keep
// retrying their setup, neither exits, and /readyz stays false until the
// third node joins and setup is done. Then events for 300 scripts arrive,
// and mid-run the node that leads the BINDINGS stream is stopped (more
// events arrive while it is down) and started again on its store. Every script converges, every event is
// acknowledged and none dead-lettered, the emulator never sees two writes
// to one script at once, and the emulator's strict sliding window of the
// same budget as --rate-limit never answers 429.
func TestClusterTwoProcessesSurviveLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node NATS cluster and two reconciler processes (about a minute)")
	}
	const (
		scripts = 300
		// The budget is small enough that the run spans several of its
		// windows (about 900 requests), and its window long enough that
		// the budget's lateness margin (window/50) covers the scheduling
		// noise of a loaded machine.
		budget = 250
		window = 5 * time.Second
	)
	emu, base := cfapitest.NewTestServer(t, cfapitest.Options{
		RateLimit: budget, RateWindow: window, RateSliding: true, RateBlock: window,
	})
	if err := emu.SeedVaried(acct, "customers", scripts); err != nil {
		t.Fatal(err)
	}

	cl := natscluster.New(t, 3)
	n1, n2, n3 := cl.Nodes[0], cl.Nodes[1], cl.Nodes[2]
	env := map[string]string{
		"CLOUDFLARE_API_BASE_URL":     base,
		"CLOUDFLARE_API_TOKEN":        "cluster-test-token",
		"RECONCILER_RATE_LIMIT":       fmt.Sprintf("%d/%s", budget, window),
		"RECONCILER_SHUTDOWN_TIMEOUT": "10s",
		// A redelivery after a lost acknowledgement (the node that carried
		// it died) comes after AckWait: keep the test short.
		"RECONCILER_ACK_WAIT": "10s",
	}

	// A fresh cluster with two of its three nodes, and two processes
	// started at the same moment.
	start := time.Now()
	cl.StartNode(n1)
	cl.StartNode(n2)
	args := []string{"--nats-url", cl.URLs(), "--stream-replicas", "3"}
	procs := []*clusterProc{startClusterProc(t, "run-a", env, args...), startClusterProc(t, "run-b", env, args...)}
	testutil.Eventually(t, 60*time.Second, func() bool {
		for _, p := range procs {
			p.alive(t)
			if !strings.Contains(p.log.String(), "setting up JetStream, will retry") {
				return false
			}
		}
		return true
	}, "both processes retry their setup while the cluster cannot place 3 replicas")
	for _, p := range procs {
		if code, body := p.ready(); code != http.StatusServiceUnavailable {
			t.Fatalf("%s: /readyz = %d %q while setting up; want 503", p.name, code, body)
		}
	}
	t.Logf("both processes retrying setup %s after start; /readyz 503", time.Since(start).Round(time.Millisecond))

	cl.StartNode(n3)
	joined := time.Now()
	nc, err := nats.Connect(cl.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, p := range procs {
		testutil.Eventually(t, 90*time.Second, func() bool {
			p.alive(t)
			code, _ := p.ready()
			return code == http.StatusOK
		}, "%s ready", p.name)
	}
	t.Logf("both ready %s after the third node joined (%s after start)", time.Since(joined).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	// Ready means set up: every stream and bucket exists with 3 replicas.
	wantStreams := []string{"BINDINGS", "BINDINGS_DLQ", "BINDINGS_BACKFILL", "BINDINGS_BACKFILL_RESULTS",
		"KV_reconciler_desired", "KV_reconciler_applied", "KV_reconciler_leases", "KV_reconciler_backfill_runs",
		"KV_reconciler_config", "KV_reconciler_budget"}
	for _, name := range wantStreams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s after ready: %v", name, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("stream %s has %d replicas, want 3", name, r)
		}
	}
	for _, c := range [][2]string{{"BINDINGS", "reconciler"}, {"BINDINGS_BACKFILL", "reconciler_backfill"}} {
		cons, err := js.Consumer(ctx, c[0], c[1])
		if err != nil {
			t.Fatalf("consumer %s after ready: %v", c[1], err)
		}
		if ci := cons.CachedInfo(); ci.Config.Replicas != 3 && ci.Config.Replicas != 0 || ci.Cluster == nil || len(ci.Cluster.Replicas) != 2 {
			t.Errorf("consumer %s: replicas %d, cluster %+v; want 3", c[1], ci.Config.Replicas, ci.Cluster)
		}
	}

	// Events: the first generation for every script at once; the second
	// trickles in (about 50/s) while the run goes on, and across the stop
	// of the leader; a third for every sixth script while the leader is
	// down. The highest generation is what must end up applied, whatever
	// the order of arrival.
	eventMsg := func(i, gen int) *nats.Msg {
		ev := fmt.Sprintf(`{"schema":"bindings.change/v1","id":"c-%d-%d","account_id":"%s","dispatch_namespace":"customers","script":"%s","generation":%d,"op":"patch","upsert":[{"type":"plain_text","name":"CLUSTER","text":"gen-%d"}]}`,
			i, gen, acct, cfapitest.TenantName(i), gen, gen)
		m := nats.NewMsg("bindings." + acct + ".customers." + cfapitest.TenantName(i))
		m.Data = []byte(ev)
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("c-%d-%d", i, gen))
		return m
	}
	lastGen := func(i int) int {
		if i%6 == 0 {
			return 3
		}
		return 2
	}
	// publish publishes m until the stream acknowledges it (a publish may
	// fail while the cluster moves its leaders; the platform retries it
	// with the same Nats-Msg-Id), waiting for next between attempts.
	publish := func(m *nats.Msg, next <-chan time.Time) error {
		deadline := time.Now().Add(60 * time.Second)
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.PublishMsg(pctx, m)
			cancel()
			if err == nil || time.Now().After(deadline) {
				return err
			}
			<-next
		}
	}
	published := time.Now()
	for i := 1; i <= scripts; i++ {
		if _, err := js.PublishMsgAsync(eventMsg(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishing did not complete")
	}
	var trickled atomic.Int64
	trickleDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 1; i <= scripts; i++ {
			<-tick.C
			if err := publish(eventMsg(i, 2), tick.C); err != nil {
				trickleDone <- fmt.Errorf("event c-%d-2: %w", i, err)
				return
			}
			trickled.Add(1)
		}
		trickleDone <- nil
	}()

	converged := func() int {
		n := 0
		for i := 1; i <= scripts; i++ {
			bs, _ := emu.Bindings(acct, "customers", cfapitest.TenantName(i))
			if b, ok := wire.Bindings(bs).ByName("CLUSTER"); ok {
				if text, _ := b.String("text"); text == fmt.Sprintf("gen-%d", lastGen(i)) {
					n++
				}
			}
		}
		return n
	}

	// Mid-run, stop the node that leads BINDINGS.
	testutil.Eventually(t, 60*time.Second, func() bool { return emu.Stats().Writes >= scripts/4 }, "a quarter of the writes")
	var leader *natscluster.Node
	testutil.Eventually(t, 10*time.Second, func() bool {
		leader, err = cl.StreamLeader(ctx, js, "BINDINGS")
		return err == nil
	}, "BINDINGS has a leader")
	writesAtStop, convergedAtStop, trickledAtStop := emu.Stats().Writes, converged(), trickled.Load()
	cl.Stop(leader)
	stopped := time.Now()
	t.Logf("stopped %s, the BINDINGS leader, %s after the first publish: %d writes, %d/%d scripts converged, %d/%d second-generation events published",
		leader.Name, stopped.Sub(published).Round(time.Millisecond), writesAtStop, convergedAtStop, scripts, trickledAtStop, scripts)
	var newLeader *natscluster.Node
	testutil.Eventually(t, 60*time.Second, func() bool {
		newLeader, err = cl.StreamLeader(ctx, js, "BINDINGS")
		return err == nil && newLeader != leader
	}, "BINDINGS elects a new leader")
	t.Logf("%s leads BINDINGS %s after the stop", newLeader.Name, time.Since(stopped).Round(time.Millisecond))
	late := 0
	retry := time.NewTicker(50 * time.Millisecond)
	defer retry.Stop()
	for i := 6; i <= scripts; i += 6 {
		if err := publish(eventMsg(i, 3), retry.C); err != nil {
			t.Fatalf("publish event c-%d-3 with %s down: %v", i, leader.Name, err)
		}
		late++
	}
	// Work goes on with two nodes (unless it was nearly done).
	target := min(writesAtStop+scripts/10, scripts)
	testutil.Eventually(t, 90*time.Second, func() bool {
		for _, p := range procs {
			p.alive(t)
		}
		return emu.Stats().Writes >= target
	}, "writes go on while %s is down (%d at the stop)", leader.Name, writesAtStop)
	t.Logf("with %s down for %s: %d writes, %d third-generation and %d second-generation events published",
		leader.Name, time.Since(stopped).Round(time.Millisecond), emu.Stats().Writes-writesAtStop, late, trickled.Load()-trickledAtStop)
	cl.StartNode(leader)
	restarted := time.Now()
	select {
	case err := <-trickleDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(120 * time.Second):
		t.Fatal("the second generation was not published")
	}

	diagnose := func() string {
		var b strings.Builder
		_, state := clusterDrained(ctx, js)
		fmt.Fprintf(&b, "converged %d/%d; consumer %s", converged(), scripts, state)
		for _, p := range procs {
			fmt.Fprintf(&b, "; %s: received %v, held %v, queued %v, consumer pending %v, reconciles %v (lease busy or held %v)",
				p.name, p.counter(t, "reconciler_events_received_total"), p.counter(t, "reconciler_held_events"),
				p.counter(t, "reconciler_queue_depth"), p.counter(t, "reconciler_consumer_pending", `lane="live"`),
				p.counter(t, "reconciler_reconcile_total"), p.counter(t, "reconciler_reconcile_total", `result="lease_busy"`))
		}
		return b.String()
	}
	testutil.Eventually(t, 120*time.Second, func() bool {
		for _, p := range procs {
			p.alive(t)
		}
		return converged() == scripts
	}, "every script converges: %s", stringerFunc(diagnose))
	t.Logf("all %d scripts converged %s after the first publish (%s after the restart of %s)",
		scripts, time.Since(published).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond), leader.Name)

	// Nothing lost: every event is settled, none dead-lettered.
	var state string
	testutil.Eventually(t, 60*time.Second, func() bool {
		ok, s := clusterDrained(ctx, js)
		state = s
		return ok
	}, "every event settled: %s", stringerFunc(func() string { return state }))
	dls, err := tools.ListDeadLetters(ctx, js, "BINDINGS_DLQ", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		t.Errorf("dead letter: %s %s: %s", d.Record.Subject, d.Record.Reason, d.Record.Error)
	}
	// The restarted node catches up.
	testutil.Eventually(t, 60*time.Second, func() bool {
		ok, n, err := natscluster.StreamReplicasCurrent(ctx, js, "BINDINGS")
		return err == nil && ok && n == 3
	}, "the BINDINGS replica on %s catches up", leader.Name)

	st := emu.Stats()
	var settled [2]float64
	for i, p := range procs {
		settled[i] = p.counter(t, "reconciler_events_total")
		t.Logf("%s: NATS disconnections %d; events settled %v (applied %v, noop %v, stale %v), reconciles %v, API requests %v",
			p.name, strings.Count(p.log.String(), "NATS disconnected"), settled[i], p.counter(t, "reconciler_events_total", `outcome="applied"`),
			p.counter(t, "reconciler_events_total", `outcome="noop"`), p.counter(t, "reconciler_events_total", `outcome="stale"`),
			p.counter(t, "reconciler_reconcile_total"), p.counter(t, "reconciler_api_requests_total"))
	}
	t.Logf("emulator: %d requests (%d reads, %d writes), %d × 429, %d blocks, %d overlapping writes; run %s (budget %d/%s)",
		st.Reads+st.Writes, st.Reads, st.Writes, st.RateLimited, st.RateBlocks, st.OverlappingWrites,
		time.Since(published).Round(time.Millisecond), budget, window)
	if st.RateLimited != 0 || st.RateBlocks != 0 {
		t.Errorf("the API answered 429 %d times (%d blocks): the budget was exceeded", st.RateLimited, st.RateBlocks)
	}
	if st.OverlappingWrites != 0 {
		t.Errorf("%d writes to a script overlapped another", st.OverlappingWrites)
	}
	if settled[0] == 0 || settled[1] == 0 {
		t.Errorf("one process settled no event (%v): the test did not run two workers", settled)
	}
	for _, p := range procs {
		p.stop(t, 15*time.Second)
	}
}

// clusterDrained reports whether every event in BINDINGS is acknowledged
// or terminated, and the consumer's state.
func clusterDrained(ctx context.Context, js jetstream.JetStream) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "BINDINGS")
	if err != nil {
		return false, err.Error()
	}
	si, err := st.Info(ctx)
	if err != nil {
		return false, err.Error()
	}
	c, err := st.Consumer(ctx, "reconciler")
	if err != nil {
		return false, err.Error()
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return false, err.Error()
	}
	state, _ := json.Marshal(map[string]uint64{"last": si.State.LastSeq, "ack_floor": ci.AckFloor.Stream,
		"pending": ci.NumPending, "ack_pending": uint64(ci.NumAckPending), "redelivered": uint64(ci.NumRedelivered)})
	return ci.NumPending == 0 && ci.NumAckPending == 0 && ci.AckFloor.Stream >= si.State.LastSeq, string(state)
}

// stringerFunc prints what its function returns.
type stringerFunc func() string

func (s stringerFunc) String() string { return s() }
