//go:build chaos

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi"
	"github.com/reconciler/reconciler/internal/cfapi/cfapitest"
	"github.com/reconciler/reconciler/internal/cfapi/wire"
	"github.com/reconciler/reconciler/internal/testutil"
	"github.com/reconciler/reconciler/scripts/chaos/badinput"
)

// Values the scenarios put in secrets: none may reach a reconciler log or
// a dead letter.
const (
	chaosSecretPrefix = "chaos-secret-"
	seedSecretPrefix  = "seed-secret-" // cfapitest.SeedVaried's API_TOKEN
)

// workload is the events of a scenario over the scripts of namespace ns,
// and the state they lead to.
type workload struct {
	ns        string
	scripts   []string
	initial   map[string]map[string]string
	events    []*event // in publishing order
	dups      []*event // the same events again, under another Nats-Msg-Id
	want      map[string]map[string]string
	necessary int // scripts whose wanted state differs from the initial one
	touched   map[string]map[string]bool
}

// newWorkload seeds n varied tenants in ns and builds one or two patch
// events per script:
//
//   - 20% ask for what is live already (TENANT with its value): no write;
//   - the others upsert a KV binding CHAOS_KV, a third of them a secret
//     CHAOS_SECRET too, a seventh remove one of the tenant's own bindings;
//   - 10% get two events published newest first (generation 2 sets
//     CHAOS_KV, generation 1 sets it too and adds CHAOS_OLD): the older
//     one's CHAOS_KV is stale, its CHAOS_OLD applies;
//   - with dups, 10% are published a second time under another
//     Nats-Msg-Id (a duplicate the stream does not drop).
func newWorkload(t *testing.T, w *world, ns string, n int, dups bool) *workload {
	t.Helper()
	if err := w.emu.SeedVaried(acct, ns, n); err != nil {
		t.Fatal(err)
	}
	wl := &workload{ns: ns, initial: map[string]map[string]string{}, touched: map[string]map[string]bool{}}
	kv := func(i int, v string) wire.Binding {
		return wire.MustParseBinding(fmt.Sprintf(`{"type":"kv_namespace","name":"CHAOS_KV","namespace_id":"%s%028x"}`, v, i))
	}
	for i := 1; i <= n; i++ {
		s := cfapitest.TenantName(i)
		wl.scripts = append(wl.scripts, s)
		wl.initial[s] = w.live(ns, s)
		id := func(g int) string { return fmt.Sprintf("%s-%s-g%d", w.name, s, g) }
		var evs []*event
		switch i % 10 {
		case 0, 5:
			evs = append(evs, newEvent(id(1), ns, s, 1,
				[]wire.Binding{wire.MustParseBinding(fmt.Sprintf(`{"type":"plain_text","name":"TENANT","text":%q}`, s))}, nil))
		default:
			ups := []wire.Binding{kv(i, "a1a1")}
			if i%3 == 0 {
				ups = append(ups, wire.MustParseBinding(fmt.Sprintf(`{"type":"secret_text","name":"CHAOS_SECRET","text":"%s%d-%d"}`, chaosSecretPrefix, i, seed%1000)))
			}
			var rm []string
			if i%7 == 0 {
				var names []string
				for name := range wl.initial[s] {
					if name != "TENANT" && name != "API_TOKEN" {
						names = append(names, name)
					}
				}
				sort.Strings(names)
				rm = names[len(names)-1:]
			}
			if i%10 == 1 {
				evs = append(evs, newEvent(id(2), ns, s, 2, []wire.Binding{kv(i, "b2b2")}, nil))
				ups = append(ups, wire.MustParseBinding(`{"type":"plain_text","name":"CHAOS_OLD","text":"from generation 1"}`))
			}
			evs = append(evs, newEvent(id(1), ns, s, 1, ups, rm))
			if dups && i%10 == 2 {
				d := *evs[0]
				d.msgID += ":again"
				wl.dups = append(wl.dups, &d)
			}
		}
		wl.events = append(wl.events, evs...)
	}
	wl.want = expected(wl.initial, wl.events)
	for _, s := range wl.scripts {
		if !equalMaps(wl.want[s], wl.initial[s]) {
			wl.necessary++
		}
	}
	for _, e := range wl.events {
		if wl.touched[e.script] == nil {
			wl.touched[e.script] = map[string]bool{}
		}
		for _, b := range e.upsert {
			wl.touched[e.script][b.Name()] = true
		}
		for _, r := range e.remove {
			wl.touched[e.script][r] = true
		}
	}
	return wl
}

// lost counts the bindings no event mentions (the tenant's own, its
// secret among them) that are missing or changed.
func (wl *workload) lost(w *world) (lost, secretsLost int) {
	for _, s := range wl.scripts {
		got := w.live(wl.ns, s)
		for name, v := range wl.initial[s] {
			if wl.touched[s][name] {
				continue
			}
			if got[name] != v {
				lost++
				if name == "API_TOKEN" {
					secretsLost++
				}
			}
		}
	}
	return lost, secretsLost
}

// waitConverged waits until every script holds its wanted state and
// returns when that happened.
func (wl *workload) waitConverged(t *testing.T, w *world, timeout time.Duration) time.Time {
	t.Helper()
	var last string
	testutil.Eventually(t, timeout, func() bool {
		n, bad := w.converged(wl.ns, wl.want)
		if n == len(wl.scripts) {
			return true
		}
		last = fmt.Sprintf("%d of %d converged; %s: %s", n, len(wl.scripts), bad, diff(w.live(wl.ns, bad), wl.want[bad]))
		return false
	}, "every script converged (%v)", stringer(func() string { return last }))
	return time.Now()
}

// commonFigures records what every scenario checks at its end.
func commonFigures(t *testing.T, w *world, scen string, wl *workload) {
	t.Helper()
	n, _ := w.converged(wl.ns, wl.want)
	figure(scen, "scripts equal to their desired state", fmt.Sprintf("%d/%d", n, len(wl.scripts)), "all", n == len(wl.scripts))
	lost, secretsLost := wl.lost(w)
	figure(scen, "unowned bindings lost or changed (of which secrets)", fmt.Sprintf("%d (%d)", lost, secretsLost), "0 (0)", lost == 0)
	p, a, err := w.consumerState()
	figure(scen, "consumer NumPending / NumAckPending at the end", fmt.Sprintf("%d / %d", p, a), "0 / 0", err == nil && p == 0 && a == 0)
	dl := w.deadLetters()
	figure(scen, "dead letters", len(dl), "0", len(dl) == 0)
	st := w.emu.Stats()
	figure(scen, "429s from the API's own rate limit (budget exceeded)", st.RateLimited, "0", st.RateLimited == 0)
	leaks := w.logsContain(chaosSecretPrefix, seedSecretPrefix, token)
	figure(scen, "reconciler log lines holding a secret or the token", leaks, "0", leaks == 0)
	rss := w.peakRSS()
	figure(scen, "peak RSS of `reconciler run` (largest of its processes)", fmt.Sprintf("%.0f MiB", float64(rss)/(1<<20)), "≤ 150 MiB", rss <= 150<<20)
	for _, e := range dl {
		t.Errorf("%s: unexpected dead letter: %s %s: %s", scen, e.Record.Subject, e.Record.Reason, e.Record.Error)
	}
	switch {
	case n != len(wl.scripts):
		t.Errorf("%s: %d of %d scripts converged", scen, n, len(wl.scripts))
	case lost != 0:
		t.Errorf("%s: %d unowned bindings lost or changed", scen, lost)
	case err != nil || p != 0 || a != 0:
		t.Errorf("%s: consumer pending=%d ack_pending=%d err=%v", scen, p, a, err)
	case st.RateLimited != 0:
		t.Errorf("%s: the API's rate limit answered 429 %d times", scen, st.RateLimited)
	case leaks != 0:
		t.Errorf("%s: %d log lines hold a secret", scen, leaks)
	}
}

// stopGracefully sends SIGTERM to the reconciler and records its exit.
func stopGracefully(t *testing.T, w *world, scen string) {
	t.Helper()
	w.rec.signal(syscall.SIGTERM)
	code := w.rec.cmd.ProcessState.ExitCode()
	figure(scen, "exit code after SIGTERM (graceful shutdown)", code, "0", code == 0)
	if code != 0 {
		t.Errorf("%s: reconciler exited %d after SIGTERM:\n%s", scen, code, tail(w.rec.log, 20))
	}
}

// maxWrites is `reconciler run`'s default --max-writes: API writes in
// flight at once.
const maxWrites = 4

// TestCrash is scenario 1: scripts reconciled while `reconciler run` is
// killed with SIGKILL at random moments and restarted at once.
func TestCrash(t *testing.T) {
	only(t, "crash")
	const scen = "1 crash"
	n := envInt("CHAOS_SCRIPTS", 2000)
	kills := envInt("CHAOS_KILLS", 5)
	w := newWorld(t, "crash", 300)
	wl := newWorkload(t, w, "chaos", n, true)
	// Writes take a while, so that kills find some in flight.
	w.emu.SetFaults(cfapitest.Faults{WriteLatency: 30 * time.Millisecond})
	rng := rand.New(rand.NewPCG(seed, 1))

	w.startReconciler()
	stopTrace := w.trace()
	var pubErr atomic.Value
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		first := len(wl.events) * 2 / 5
		if err := w.publish(wl.events[:first]); err != nil {
			pubErr.Store(err)
			return
		}
		for i := first; i < len(wl.events); i += 100 {
			if err := w.publish(wl.events[i:min(i+100, len(wl.events))]); err != nil {
				pubErr.Store(err)
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		if err := w.publish(wl.dups); err != nil {
			pubErr.Store(err)
		}
	}()

	var inFlight, midWork int
	var lastRestart time.Time
	var killedAt, restartedAt []time.Time
	for k := 0; k < kills; k++ {
		// A random moment 0.5-2.5s into this process's life.
		time.Sleep(500*time.Millisecond + time.Duration(rng.Int64N(int64(2*time.Second))))
		done, _ := w.writes()
		if done < wl.necessary {
			midWork++
		}
		inFlight += w.emu.InFlightWrites()
		w.rec.signal(syscall.SIGKILL)
		killedAt = append(killedAt, time.Now())
		t.Logf("kill %d: %d of %d necessary writes done", k+1, done, wl.necessary)
		w.startReconciler()
		lastRestart = time.Now()
		restartedAt = append(restartedAt, lastRestart)
	}
	<-pubDone
	if err, _ := pubErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	convergedAt := wl.waitConverged(t, w, 10*time.Minute)
	stopTrace()
	settle := w.waitSettled(4*w.ackWait + 2*time.Minute)
	settledAt := time.Now()
	done, attempts := w.writes()
	twice := map[string][]string{}
	for _, r := range w.emu.RequestLog() {
		if r.Method != http.MethodGet && r.Status >= 200 && r.Status < 300 {
			twice[r.Script] = append(twice[r.Script], r.Time.Format("15:04:05.000"))
		}
	}
	for s, at := range twice {
		if len(at) > 1 {
			t.Logf("%s written %d times, at %v", s, len(at), at)
		}
	}
	for k, at := range killedAt {
		t.Logf("kill %d at %s, restarted process ready at %s", k+1, at.Format("15:04:05.000"), restartedAt[k].Format("15:04:05.000"))
	}

	figure(scen, "scripts / events published (duplicates)", fmt.Sprintf("%d / %d (%d)", n, len(wl.events)+len(wl.dups), len(wl.dups)), "", true)
	figure(scen, "SIGKILLs (of which while writes were still due)", fmt.Sprintf("%d (%d)", kills, midWork), "≥ 5 (≥ 5)", kills >= 5 && midWork >= 5)
	figure(scen, "writes carried out / necessary (scripts that had to change)", fmt.Sprintf("%d / %d", done, wl.necessary), "", true)
	extra := done - wl.necessary
	figure(scen, "extra writes (writes in flight at the kills)", fmt.Sprintf("%d (%d)", extra, inFlight),
		fmt.Sprintf("≤ %d", kills), extra <= kills)
	figure(scen, fmt.Sprintf("  (bound: ≤ --max-writes (%d) per kill, secrets written but not yet recorded)", maxWrites), "", fmt.Sprintf("≤ %d", kills*maxWrites), extra <= kills*maxWrites)
	figure(scen, "write attempts not carried out (cut by a kill)", attempts-done, "", true)
	after := convergedAt.Sub(lastRestart)
	figure(scen, "converged after the last restart (all work left included)", after.Round(100*time.Millisecond), "", true)
	cut, worst := recoveredAfterKills(w.emu.RequestLog(), killedAt, restartedAt)
	figure(scen, fmt.Sprintf("scripts cut mid-write by a kill (%d): written after the kill within", cut), worst.Round(100*time.Millisecond), "", true)
	figure(scen, "  (their leases expire ≤ LeaseTTL = 10s after the kill; then they queue for the budget)", "", "", true)
	figure(scen, fmt.Sprintf("then settled (events of killed processes, AckWait %s)", w.ackWait), settle.Round(100*time.Millisecond), "≤ 30s", settle <= 30*time.Second)
	lastKill := killedAt[len(killedAt)-1]
	sinceKill := settledAt.Sub(lastKill)
	figure(scen, "last SIGKILL → every event settled (work left included)", sinceKill.Round(100*time.Millisecond), "≤ 30s", sinceKill <= 30*time.Second)
	commonFigures(t, w, scen, wl)
	stopGracefully(t, w, scen)
	// A write the API carried out just before a kill, whose last-applied
	// record the killed process had no time to save, is made again when it
	// holds a secret (the API never shows a secret's value, so nothing else
	// can tell it is live): at most --max-writes per kill.
	if extra > kills*maxWrites {
		t.Errorf("%d writes for %d necessary: more than %d extra writes per kill (%d kills)", done, wl.necessary, maxWrites, kills)
	}
	if extra > kills {
		t.Logf("%d extra writes for %d kills: several writes were carried out just before one kill", extra, kills)
	}
	if midWork < 5 {
		t.Errorf("only %d kills happened while writes were still due", midWork)
	}
}

// TestNATSRestart is scenario 2: the nats-server is stopped mid-run and
// started again on the same store; the reconciler must not exit, must
// reconnect and converge.
func TestNATSRestart(t *testing.T) {
	only(t, "nats")
	const scen = "2 nats"
	n := envInt("CHAOS_NATS_SCRIPTS", 600)
	down := envDuration("CHAOS_NATS_DOWN", 5*time.Second)
	w := newWorld(t, "nats-restart", 200)
	wl := newWorkload(t, w, "chaos", n, false)
	// Events published after NATS is back: scripts 1..n/6 get a second
	// change.
	var later []*event
	for i := 1; i <= n/6; i++ {
		s := cfapitest.TenantName(i)
		later = append(later, newEvent(fmt.Sprintf("%s-%s-g9", w.name, s), wl.ns, s, 9,
			[]wire.Binding{wire.MustParseBinding(`{"type":"plain_text","name":"AFTER_NATS","text":"back"}`)}, nil))
	}
	all := append(append([]*event(nil), wl.events...), later...)
	wl.want = expected(wl.initial, all)
	// The later events come after the first ones were applied: each is
	// one more necessary write.
	wl.necessary += len(later)
	for _, e := range later {
		wl.touched[e.script]["AFTER_NATS"] = true
	}

	rec := w.startReconciler()
	pubDone := make(chan error, 1)
	go func() { pubDone <- w.publish(wl.events) }()
	testutil.Eventually(t, 5*time.Minute, func() bool {
		done, _ := w.writes()
		return done >= wl.necessary/3
	}, "a third of the writes done")
	doneBefore, _ := w.writes()
	inFlight := w.emu.InFlightWrites()
	w.nats.signal(syscall.SIGTERM)
	stoppedAt := time.Now()
	sawNotReady, exited := false, false
	for time.Since(stoppedAt) < down {
		if !w.ready() {
			sawNotReady = true
		}
		if !rec.running() {
			exited = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.startNATS()
	upAt := time.Now()
	testutil.Eventually(t, 2*time.Minute, w.ready, "reconciler ready again after NATS is back")
	readyAfter := time.Since(upAt)
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	if err := w.publish(later); err != nil {
		t.Fatal(err)
	}
	convergedAt := wl.waitConverged(t, w, 5*time.Minute)
	settle := w.waitSettled(4*w.ackWait + 2*time.Minute)
	done, _ := w.writes()

	figure(scen, "scripts / events published", fmt.Sprintf("%d / %d", n, len(all)), "", true)
	figure(scen, fmt.Sprintf("NATS stopped (SIGTERM) for %s after writes done", down), fmt.Sprintf("%d/%d", doneBefore, wl.necessary), "", true)
	figure(scen, "reconciler processes started / exited meanwhile", fmt.Sprintf("%d / %t", w.recRuns, exited || !rec.running()), "1 / false", w.recRuns == 1 && !exited && rec.running())
	figure(scen, "/readyz failed while NATS was down", sawNotReady, "true", sawNotReady)
	figure(scen, "ready again after NATS came back", readyAfter.Round(100*time.Millisecond), "", true)
	figure(scen, "converged after NATS came back", convergedAt.Sub(upAt).Round(100*time.Millisecond), "", true)
	figure(scen, fmt.Sprintf("then settled (AckWait %s)", w.ackWait), settle.Round(100*time.Millisecond), "", true)
	figure(scen, "writes / necessary (writes in flight at the stop)", fmt.Sprintf("%d / %d (%d)", done, wl.necessary, inFlight),
		fmt.Sprintf("≤ %d", wl.necessary+max(inFlight, 1)), done <= wl.necessary+max(inFlight, 1))
	commonFigures(t, w, scen, wl)
	if exited || !rec.running() {
		t.Fatalf("the reconciler exited when NATS stopped:\n%s", tail(rec.log, 30))
	}
	if !sawNotReady {
		t.Error("/readyz never failed while NATS was down")
	}
	stopGracefully(t, w, scen)
}

// TestAPIFaults is scenario 3: the emulator answers 5% 5xx, 2% 429 with
// Retry-After, resets 1% of connections and has latency spikes; everything
// converges within the retry bounds, no event is dropped, nothing is
// dead-lettered.
func TestAPIFaults(t *testing.T) {
	only(t, "faults")
	const scen = "3 faults"
	n := envInt("CHAOS_FAULT_SCRIPTS", 600)
	w := newWorld(t, "faults", 200)
	wl := newWorkload(t, w, "chaos", n, true)
	base := cfapitest.Faults{FailRate: 0.05, ThrottleRate: 0.02, ResetRate: 0.01}
	w.emu.SetFaults(base)
	stop := make(chan struct{})
	var spikes atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a latency spike of 1.5s on every request for 1s, every 4s
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Second):
			}
			spiky := base
			spiky.Latency = 1500 * time.Millisecond
			w.emu.SetFaults(spiky)
			spikes.Add(1)
			select {
			case <-stop:
			case <-time.After(time.Second):
			}
			w.emu.SetFaults(base)
		}
	}()
	defer func() { close(stop); wg.Wait(); w.emu.SetFaults(cfapitest.Faults{}) }()

	w.startReconciler()
	if err := w.publish(append(append([]*event(nil), wl.events...), wl.dups...)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	convergedAt := wl.waitConverged(t, w, 15*time.Minute)
	settle := w.waitSettled(4*w.ackWait + 5*time.Minute)

	st := w.emu.Stats()
	var s5xx, s429, resets int
	for _, byStatus := range st.Requests {
		for code, c := range byStatus {
			switch {
			case code >= 500:
				s5xx += c
			case code == http.StatusTooManyRequests:
				s429 += c
			case code == 0:
				resets += c
			}
		}
	}
	streak, streakAt := longestFailureStreak(w.emu.RequestLog())
	retries := w.metric("reconciler_api_retries_total")
	settled := w.metric("reconciler_events_total")
	published := len(wl.events) + len(wl.dups)
	transient := w.metric("reconciler_reconcile_total", `result="transient"`)
	redeliveries := w.metric("reconciler_event_redeliveries_total")
	done, _ := w.writes()

	figure(scen, "scripts / events published (duplicates)", fmt.Sprintf("%d / %d (%d)", n, published, len(wl.dups)), "", true)
	figure(scen, "API requests / injected faults (5xx, 429, resets)", fmt.Sprintf("%d / %d (%d, %d, %d)", st.Total, st.Injected, s5xx, s429-st.RateLimited, resets), "", true)
	figure(scen, "latency spikes (1.5s on every request for 1s)", spikes.Load(), "", true)
	figure(scen, "client retries (reconciler_api_retries_total) ≤ faults", fmt.Sprintf("%.0f ≤ %d", retries, st.Injected+st.RateLimited), "yes", retries <= float64(st.Injected+st.RateLimited) && retries >= 0)
	figure(scen, "longest run of failed attempts on one script+endpoint", fmt.Sprintf("%d (%s)", streak, streakAt), "≤ 5", streak <= 5)
	figure(scen, "reconciles that gave up on a transient error (redelivered)", fmt.Sprintf("%.0f (%.0f redeliveries)", transient, redeliveries), "", true)
	figure(scen, "events settled / published (none dropped)", fmt.Sprintf("%.0f / %d", settled, published), fmt.Sprint(published), int(settled) == published)
	figure(scen, "writes carried out / necessary", fmt.Sprintf("%d / %d", done, wl.necessary), "", true)
	figure(scen, "converged after the first event / then settled", fmt.Sprintf("%s / %s", convergedAt.Sub(start).Round(100*time.Millisecond), settle.Round(100*time.Millisecond)), "", true)
	commonFigures(t, w, scen, wl)
	if retries > float64(st.Injected+st.RateLimited) {
		t.Errorf("%v retries for %d faults", retries, st.Injected)
	}
	if streak > 5 {
		t.Errorf("%d failed attempts in a row on %s: beyond MaxAttempts", streak, streakAt)
	}
	if int(settled) != published {
		t.Errorf("%v events settled, %d published", settled, published)
	}
	stopGracefully(t, w, scen)
}

// longestFailureStreak returns the longest run of failed attempts (no
// answer, 429 or 5xx) on one script and endpoint with no success between.
func longestFailureStreak(log []cfapitest.Request) (int, string) {
	sort.SliceStable(log, func(i, j int) bool { return log[i].Time.Before(log[j].Time) })
	run := map[string]int{}
	best, at := 0, ""
	for _, r := range log {
		k := r.Namespace + "/" + r.Script + " " + r.Endpoint
		if r.Status == 0 || r.Status == http.StatusTooManyRequests || r.Status >= 500 {
			run[k]++
			if run[k] > best {
				best, at = run[k], k
			}
		} else {
			run[k] = 0
		}
	}
	return best, at
}

// TestBadInput is scenario 4: the bad-input catalogue against the real
// binary and a nats-server with the default 1 MiB max_payload.
func TestBadInput(t *testing.T) {
	only(t, "badinput")
	const scen = "4 badinput"
	w := newWorld(t, "badinput", 500)
	cases := badinput.Cases(acct)
	if err := w.emu.CreateNamespace(acct, badinput.Namespace); err != nil {
		t.Fatal(err)
	}
	w.emu.Inject.DenyAccount(badinput.ForbiddenAccount)
	seeded := []wire.Binding{
		wire.MustParseBinding(`{"type":"secret_text","name":"API_TOKEN","text":"seed-secret-badinput"}`),
		wire.MustParseBinding(`{"type":"plain_text","name":"THEIRS","text":"made by hand"}`),
	}
	seed := func(ns, script string, live ...string) {
		bs := slices.Clone(seeded)
		for _, raw := range live {
			bs = append(bs, wire.MustParseBinding(raw))
		}
		err := w.emu.PutScript(acct, ns, script, cfapitest.Script{MainModule: "index.js",
			Modules:  []cfapitest.Module{{Name: "index.js", ContentType: "application/javascript+module", Data: []byte("export default {}")}},
			Bindings: bs, Settings: map[string]json.RawMessage{"compatibility_date": json.RawMessage(`"2025-01-01"`)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	redeliveries := 0
	for _, c := range cases {
		seed(c.Namespace, c.Script, c.Live...)
		c.Arrange(w.emu, acct, clientAttempts)
		if c.API.FailFirstReconcile {
			redeliveries++
		}
	}
	seed(badinput.Namespace, "after-bad-input")
	rec := w.startReconciler()
	maxPayload := int(w.nc.MaxPayload())
	baseRSS := vmField(rec.cmd.Process.Pid, "VmRSS:")

	refused, refusedWrong, mustRefuseN := 0, 0, 0
	publishCase := func(c badinput.Case) {
		if c.RefusedAbove > 0 && len(c.Body) > maxPayload {
			mustRefuseN++
		}
		m := nats.NewMsg(c.Subject)
		m.Data = c.Body
		m.Header.Set(jetstream.MsgIDHeader, c.MsgID)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := w.js.PublishMsg(ctx, m)
		cancel()
		mustRefuse := c.RefusedAbove > 0 && len(c.Body) > maxPayload
		switch {
		case err != nil && mustRefuse:
			refused++
		case err != nil:
			refusedWrong++
			t.Errorf("%s: publish refused: %v", c.Name, err)
		case mustRefuse:
			refusedWrong++
			t.Errorf("%s: a %d-byte body was stored by a server with max_payload %d", c.Name, len(c.Body), maxPayload)
		}
	}
	// The worst events first, one at a time: the reconciler's peak
	// resident set is reset (/proc/<pid>/clear_refs) before each and read
	// once it has settled, so each peak is that event's (and what the
	// process still held of the one before).
	var worstRSS int64
	var worstCase string
	for _, c := range cases {
		if !heavy(c) || (c.RefusedAbove > 0 && len(c.Body) > maxPayload) {
			continue
		}
		resetPeakRSS(rec.cmd.Process.Pid)
		publishCase(c)
		w.waitSettled(2 * time.Minute)
		p := vmField(rec.cmd.Process.Pid, "VmHWM:")
		t.Logf("peak RSS %s for %q (%d bytes)", mib(p), c.Name, len(c.Body))
		if p > worstRSS {
			worstRSS, worstCase = p, c.Name
		}
	}
	for _, c := range cases {
		if !heavy(c) || (c.RefusedAbove > 0 && len(c.Body) > maxPayload) {
			publishCase(c)
		}
	}
	goodSubject, goodBody := badinput.Good(acct, "after-bad-input", "good-after-catalogue")
	m := nats.NewMsg(goodSubject)
	m.Data = goodBody
	published := time.Now()
	if _, err := w.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Minute, func() bool {
		_, ok := w.live(badinput.Namespace, "after-bad-input")["AFTER_BAD_INPUT"]
		return ok
	}, "the good event after the catalogue applied")
	goodLatency := time.Since(published)
	w.catalogueSteps(cases)

	dl := w.deadLetters()
	bySubject := map[string][]dlqEntry{}
	secretsInDLQ := 0
	for _, e := range dl {
		bySubject[e.Record.Subject] = append(bySubject[e.Record.Subject], e)
		if strings.Contains(e.raw, badinput.Secret) || strings.Contains(e.raw, "seed-secret-badinput") {
			secretsInDLQ++
			t.Errorf("dead letter holds a secret: %s", cfapi.Truncate(e.raw, 400))
		}
	}
	deadLettered, rightReason, accepted, acceptedOK, intact := 0, 0, 0, 0, 0
	for _, c := range cases {
		recs := bySubject[c.Subject]
		live := w.live(c.Namespace, c.Script)
		if live["API_TOKEN"] == string(seeded[0].CanonicalJSON()) && live["THEIRS"] == string(seeded[1].CanonicalJSON()) {
			intact++
		} else {
			t.Errorf("%s: a seeded secret or unowned binding was lost", c.Name)
		}
		raw := map[string]json.RawMessage{}
		bs, _ := w.emu.Bindings(acct, c.Namespace, c.Script)
		for _, b := range bs {
			raw[b.Name()] = b.Raw()
		}
		if err := c.Exercised(w.emu, clientAttempts); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
		switch {
		case c.RefusedAbove > 0 && len(c.Body) > maxPayload:
			if len(recs) != 0 {
				t.Errorf("%s: refused at publish, yet dead-lettered", c.Name)
			}
		case c.Reason != "":
			deadLettered++
			var err error
			if c.Check != nil {
				err = c.Check(raw)
			}
			if len(recs) == 1 && recs[0].Record.Reason == c.Reason && mentions(recs[0].Record.Error, c.ErrorMentions) && err == nil {
				rightReason++
			} else {
				t.Errorf("%s: dead letters %v, want one %s naming %v; check: %v", c.Name, reasonsOf(recs), c.Reason, c.ErrorMentions, err)
			}
		case c.Accepted:
			accepted++
			if err := c.Check(raw); len(recs) == 0 && err == nil {
				acceptedOK++
			} else {
				t.Errorf("%s: accepted event: dead letters %v, check: %v", c.Name, reasonsOf(recs), err)
			}
		}
	}
	leaks := w.logsContain(badinput.Secret, "seed-secret-badinput", token)
	panics := w.metric("reconciler_panics_recovered_total")
	redelivered := w.metric("reconciler_event_redeliveries_total")
	peak := w.peakRSS()

	figure(scen, "catalogue cases (NATS max_payload)", fmt.Sprintf("%d (%d)", len(cases), maxPayload), "≥ 25", len(cases) >= 25)
	figure(scen, "refused by NATS at publish (over max_payload)", refused, fmt.Sprint(mustRefuseN), refusedWrong == 0 && refused == mustRefuseN)
	figure(scen, "dead-lettered with the reason and field of the event contract", fmt.Sprintf("%d/%d", rightReason, deadLettered), "all", rightReason == deadLettered)
	figure(scen, "valid but unusual events applied", fmt.Sprintf("%d/%d", acceptedOK, accepted), "all", acceptedOK == accepted)
	figure(scen, "dead letters holding a secret", secretsInDLQ, "0", secretsInDLQ == 0)
	figure(scen, "seeded secret and unowned binding intact (scripts)", fmt.Sprintf("%d/%d", intact, len(cases)), "all", intact == len(cases))
	figure(scen, "good event published after the catalogue: applied in", goodLatency.Round(10*time.Millisecond), "", true)
	figure(scen, "events delivered again (cases whose first reconcile failed)", fmt.Sprintf("%.0f (%d)", redelivered, redeliveries),
		fmt.Sprintf("≥ %d", redeliveries), redelivered >= float64(redeliveries))
	figure(scen, "RSS of `reconciler run` before the catalogue", mib(baseRSS), "", true)
	figure(scen, "peak RSS for the worst event (VmHWM reset before each large or deep one)", mib(worstRSS), "≤ 150 MiB", worstRSS > 0 && worstRSS <= 150<<20)
	figure(scen, "  worst event", cfapi.Truncate(worstCase, 60), "", true)
	figure(scen, "peak RSS of `reconciler run` over the rest of the catalogue", mib(peak), "≤ 150 MiB", peak <= 150<<20)
	if worstRSS == 0 || worstRSS > 150<<20 || peak > 150<<20 {
		t.Errorf("peak RSS %s for the worst event (%s), %s over the catalogue: want ≤ 150 MiB", mib(worstRSS), worstCase, mib(peak))
	}
	if redelivered < float64(redeliveries) {
		t.Errorf("%.0f events delivered again, want at least %d: the redelivery cases did not exercise one", redelivered, redeliveries)
	}
	figure(scen, "reconciler processes / panics recovered / log lines with a secret", fmt.Sprintf("%d / %.0f / %d", w.recRuns, panics, leaks), "1 / 0 / 0",
		w.recRuns == 1 && w.rec.running() && panics == 0 && leaks == 0)
	if !w.rec.running() || panics != 0 || leaks != 0 {
		t.Errorf("reconciler running=%t panics=%v secret log lines=%d", w.rec.running(), panics, leaks)
	}
	stopGracefully(t, w, scen)
}

// clientAttempts is the MaxAttempts of `reconciler run`'s API client
// (cfapi's default): how many failed reads make one reconcile fail.
const clientAttempts = 5

// heavy reports whether c is one of the catalogue's largest or deepest
// events, whose memory the suite measures one at a time.
func heavy(c badinput.Case) bool {
	return len(c.Body) >= 256<<10 || c.Reason == badinput.TooDeep || c.Reason == badinput.TooLarge
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// catalogueSteps takes the steps of the catalogue's cases (badinput.Step)
// after their first events were published: early steps as soon as their
// case's first reconcile failed, then every case's next step once every
// event has settled, and at the end waits until every event has settled.
func (w *world) catalogueSteps(cases []badinput.Case) {
	w.t.Helper()
	for _, c := range cases {
		if len(c.Then) > 0 && c.Then[0].Early {
			testutil.Eventually(w.t, 2*time.Minute, func() bool { return c.FirstReconcileFailed(w.emu, clientAttempts) },
				"%s: first reconcile failed", c.Name)
			w.catalogueStep(c, 0)
		}
	}
	w.waitSettled(2 * time.Minute)
	for k := 0; ; k++ {
		took := false
		for _, c := range cases {
			if k < len(c.Then) && !(k == 0 && c.Then[0].Early) {
				w.catalogueStep(c, k)
				took = true
			}
		}
		if !took {
			return
		}
		w.waitSettled(2 * time.Minute)
	}
}

// catalogueStep takes step k of case c, replaying with the real binary's
// `reconciler dlq replay`.
func (w *world) catalogueStep(c badinput.Case, k int) {
	w.t.Helper()
	st := c.Then[k]
	if len(st.Tenant) > 0 {
		if err := badinput.SetByHand(w.emu, acct, c.Namespace, c.Script, st.Tenant); err != nil {
			w.t.Fatalf("%s: %v", c.Name, err)
		}
	}
	if st.Replay {
		var seqs []string
		for _, e := range w.deadLetters() {
			if e.Record.Subject == c.Subject {
				seqs = append(seqs, fmt.Sprint(e.Seq))
			}
		}
		if len(seqs) == 0 {
			w.t.Errorf("%s: step %d: no dead letter to replay", c.Name, k+1)
		} else {
			w.dlqReplay(strings.Join(seqs, ","))
		}
	}
	var evs []*event
	for i, body := range st.Events {
		evs = append(evs, &event{msgID: c.StepMsgID(k, i), subject: c.Subject, body: body})
	}
	if err := w.publish(evs); err != nil {
		w.t.Fatalf("%s: %v", c.Name, err)
	}
}

func mentions(s string, subs []string) bool {
	for _, m := range subs {
		if !strings.Contains(s, m) {
			return false
		}
	}
	return true
}

func reasonsOf(es []dlqEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Record.Reason+": "+e.Record.Error)
	}
	return out
}

// trace logs the reconciler's work figures every second while CHAOS_TRACE
// is set, until the returned function is called.
func (w *world) trace() func() {
	if os.Getenv("CHAOS_TRACE") == "" {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			w.t.Logf("trace +%s: reconciles applied=%.0f noop=%.0f lease_busy=%.0f transient=%.0f inflight=%.0f queue=%.0f held=%.0f api=%.0f budget_wait=%.1fs writes=%d",
				time.Since(start).Round(time.Second),
				w.metric("reconciler_reconcile_total", `result="applied"`), w.metric("reconciler_reconcile_total", `result="noop"`),
				w.metric("reconciler_reconcile_total", `result="lease_busy"`), w.metric("reconciler_reconcile_total", `result="transient"`),
				w.metric("reconciler_inflight_reconciles"), w.metric("reconciler_queue_depth"), w.metric("reconciler_held_events"),
				w.metric("reconciler_api_requests_total"), w.metric("reconciler_rate_budget_wait_seconds_total"), func() int { d, _ := w.writes(); return d }())
		}
	}()
	return func() { close(stop); <-done }
}

// recoveredAfterKills finds the scripts whose write a kill cut (no answer,
// sent before the kill) and returns how many there were and the longest
// time from that kill to the script's next successful write: how long
// restarted processes take over the scripts a killed one held (their
// leases), queueing included.
func recoveredAfterKills(log []cfapitest.Request, killedAt, restartedAt []time.Time) (int, time.Duration) {
	sort.SliceStable(log, func(i, j int) bool { return log[i].Time.Before(log[j].Time) })
	n := 0
	var worst time.Duration
	for k, kill := range killedAt {
		from := time.Time{}
		if k > 0 {
			from = restartedAt[k-1]
		}
		cut := map[string]bool{}
		for _, r := range log {
			if r.Method != http.MethodGet && r.Status == 0 && r.Time.After(from) && r.Time.Before(kill) {
				cut[r.Script] = true
			}
		}
		for script := range cut {
			n++
			for _, r := range log {
				if r.Script == script && r.Method != http.MethodGet && r.Status >= 200 && r.Status < 300 && r.Time.After(kill) {
					worst = max(worst, r.Time.Sub(kill))
					break
				}
			}
		}
	}
	return n, worst
}
