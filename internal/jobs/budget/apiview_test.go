package budget

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
)

// The tests in this file drive the API view's arithmetic with an injected
// clock, without NATS: a Source whose shared state is set by hand.

// t0 is the tests' "now": a whole second, so that slots line up.
var t0 = time.Unix(1_800_000_000, 0)

const ms = int64(time.Millisecond)

// bareSource returns a Source without NATS whose clock is *now.
func bareSource(t *testing.T, cfg Config, now *time.Time) *Source {
	t.Helper()
	cfg.Credential = "test-credential"
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return &Source{
		cfg: cfg, log: cfg.Logger,
		g:       newGCRA(cfg.Budget, cfg.Window, cfg.MaxClockSkew+cfg.MaxLateness, cfg.Horizon),
		handout: int64(cfg.MaxLateness / 2), skew: int64(cfg.MaxClockSkew),
		changed: make(chan struct{}),
		budget:  cfg.Budget, window: cfg.Window,
		clock: func() time.Time { return *now },
	}
}

// othersOf returns the others' estimate of s's newest own view.
func othersOf(s *Source) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local.Others
}

// reserved records cells as reserved in s by the processes (in the shared
// histogram) at the histogram width of a 1 s policy.
func reserved(s *Source, cells ...int64) {
	s.cur.Hist.add(cells, int64(time.Second)/slotCount, int64(s.cfg.Horizon)+s.handout)
}

// TestRedundantBoundRevokesNothing: in auto mode with no other tool the
// budget is the quota less the reserve, so it keeps every window within
// what the API leaves by itself. A held cell that the window counted at
// the moment of the view (18 sent in the last second, one more held
// ahead) would exceed is not revoked: it fits the budget, which leaves
// the window's edge cells out by then. With one request of another tool
// the bound binds again, and the held cell goes.
func TestRedundantBoundRevokesNothing(t *testing.T) {
	now := t0
	s := bareSource(t, Config{Budget: 18, Window: time.Second, Reserve: 2}, &now)
	base := t0.UnixNano()
	var sent []int64
	for i := range 18 {
		sent = append(sent, base-999*ms+int64(i)*55*ms)
	}
	held := base + 40*ms
	reserved(s, sent...)
	reserved(s, held)
	view := func(seen time.Duration, others int) ratelimit.RateLimitView {
		// The answer to a request sent at t0: it counts the 18 sent.
		return ratelimit.RateLimitView{Name: "default", Quota: 20, Window: time.Second, Remaining: 20 - len(sent) - others,
			Reset: time.Second, Seen: t0.Add(seen), Sent: t0}
	}
	s.cells = []int64{held}
	s.ObserveRateLimit(view(time.Millisecond, 0))
	if others, kept := othersOf(s), s.Stats().Held; others != 0 || kept != 1 {
		t.Fatalf("no other tool: others estimated %d, held %d, want 0 and the cell kept", others, kept)
	}
	s.ObserveRateLimit(view(2*time.Millisecond, 1))
	if others, kept := othersOf(s), s.Stats().Held; others != 1 || kept != 0 {
		t.Errorf("one request of another tool: others estimated %d, held %d, want 1 and the cell revoked", others, kept)
	}
}

// TestOthersCountedAtTheRequestsSendTime: the API's count in an answer
// includes the cells sent before the request, not those still in flight
// when it came back. Counting those as counted would hide as many of the
// others' requests (the estimate lags by the requests in flight).
func TestOthersCountedAtTheRequestsSendTime(t *testing.T) {
	now := t0
	s := bareSource(t, Config{Budget: 1000, Window: time.Second}, &now)
	base := t0.UnixNano()
	var counted []int64
	for i := range 10 {
		counted = append(counted, base-500*ms+int64(i)*10*ms)
	}
	inFlight := []int64{base - 50*ms, base - 40*ms, base - 30*ms}
	reserved(s, counted...)
	reserved(s, inFlight...)
	const quota, others = 100, 5
	answer := ratelimit.RateLimitView{Name: "default", Remaining: quota - len(counted) - others, Reset: time.Second,
		Quota: quota, Window: time.Second, Seen: t0, Sent: t0.Add(-60 * time.Millisecond)}
	s.ObserveRateLimit(answer)
	if got := s.local.Others; got != others {
		t.Errorf("others estimated %d from an answer to a request sent before 3 cells in flight, want %d", got, others)
	}
	// Without the send time the estimate falls back to the arrival, and
	// lags by the requests in flight.
	answer.Sent, answer.Seen = time.Time{}, t0.Add(time.Millisecond)
	s.ObserveRateLimit(answer)
	if got, want := s.local.Others, others-len(inFlight); got != want {
		t.Errorf("others estimated %d without the send time, want %d (Seen counts the in-flight cells)", got, want)
	}
}

// TestHistogramRebucketsEachSlotAtItsEnd: when the slot width changes (a
// policy adopted in auto mode), every old slot's cells move to the new
// slot that holds the old slot's end, not all to the newest one, and to
// none after the first new cell (plus the horizon): neither a coarse old
// slot nor a cell held far ahead under the conservative start (which the
// adoption drops) pushes the cells sent so far into the future, where the
// estimate of the others' use, which counts only the cells sent by then,
// would miss them.
func TestHistogramRebucketsEachSlotAtItsEnd(t *testing.T) {
	base := t0.UnixNano()
	w := int64(time.Second)
	coarse, fine := int64(100*time.Millisecond), int64(10*time.Millisecond)
	h := hist{}
	h.add([]int64{base, base + int64(time.Second)}, coarse, 0) // one sent, one held far ahead
	h.add([]int64{base + 150*ms}, fine, 0)
	if got := h.oursAt(base+50*ms, w); got != 0 {
		t.Errorf("cells counted by t0+50ms: %d, want 0 (the old cell counts from its old slot's end, t0+99ms)", got)
	}
	if got := h.oursAt(base+120*ms, w); got != 1 {
		t.Errorf("cells counted by t0+120ms: %d, want 1 (the old cell)", got)
	}
	if got := h.oursAt(base+160*ms, w); got != 3 {
		t.Errorf("cells counted by t0+160ms: %d, want 3 (the old cell, the one held ahead, from the new cell's slot, and the new one)", got)
	}
	if got := h.oursInWindow(base+999*ms, w); got != 3 {
		t.Errorf("cells in the window at t0+999ms: %d, want 3 (a re-bucketed cell is counted for no less)", got)
	}

	// A 3 s slot (a 5-minute window's) into 10 ms slots: the cells sent
	// in it count from the new reservation's slot at the latest.
	h = hist{}
	h.add([]int64{base + 100*ms, base + 200*ms}, 3*int64(time.Second), 0)
	h.add([]int64{base + 400*ms}, fine, 50*ms)
	if got := h.oursAt(base+460*ms, w); got != 3 {
		t.Errorf("after a 3 s slot: cells counted by t0+460ms: %d, want 3", got)
	}
}

// TestAdoptedPolicyReplansTheConservativeStart: in auto mode the cells
// held under the conservative start are spaced by its slow budget; when
// the first answer states the policy they are dropped and the waiting
// taker woken, so that the next reservation plans on the policy's budget
// at once instead of waiting out the slow schedule.
func TestAdoptedPolicyReplansTheConservativeStart(t *testing.T) {
	now := t0
	s := bareSource(t, Config{Auto: true, Budget: 10, Window: 10 * time.Second}, &now)
	s.cells = []int64{t0.Add(time.Second).UnixNano()}
	woken := s.changed
	s.ObserveRateLimit(ratelimit.RateLimitView{Name: "default", Remaining: 19, Reset: time.Second, Quota: 20, Window: time.Second,
		Seen: t0, Sent: t0.Add(-5 * time.Millisecond)})
	if b, w := s.Budget(); b != 18 || w != time.Second {
		t.Fatalf("budget %d/%s, want 18/1s from the policy less 10%%", b, w)
	}
	if st := s.Stats(); st.Held != 0 || st.Dropped != 1 {
		t.Errorf("held %d, dropped %d: the cell of the conservative start should be dropped", st.Held, st.Dropped)
	}
	select {
	case <-woken:
	default:
		t.Error("the waiting taker was not woken")
	}
}

// hookKV is a KV bucket that calls beforeUpdate before each Update.
type hookKV struct {
	jetstream.KeyValue
	beforeUpdate func()
}

func (h *hookKV) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	if h.beforeUpdate != nil {
		h.beforeUpdate()
	}
	return h.KeyValue.Update(ctx, key, value, last)
}

// startKV starts an embedded JetStream server and returns the budget
// bucket in it.
func startKV(t *testing.T) jetstream.KeyValue {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: DefaultBucket})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestCellsPacedAtTheRateTheViewLeaves: when the other tools leave less
// than the budget, the cells are planned at the rate that is left (here
// 50 of a quota of 100 per second: one per 20 ms), not at the budget's
// (one per 10.25 ms) until the count bound stops them. Bunched at the
// budget's rate, the processes' requests would fill what is left of a
// window early and then leave it all at once a window later; when the
// other tools burst in that gap nothing makes room for them. The times
// checked are the planned cells' own, not the wall clock's.
func TestCellsPacedAtTheRateTheViewLeaves(t *testing.T) {
	cfg, err := Config{Credential: "test-credential", Budget: 100, Window: time.Second, Reserve: 10, Horizon: 200 * time.Millisecond}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := newSource(startKV(t), cfg)
	t.Cleanup(func() { _ = s.Close() })
	now := time.Now()
	s.ObserveRateLimit(ratelimit.RateLimitView{Name: "default", Remaining: 60, Reset: time.Second, Quota: 100, Window: time.Second,
		Seen: now, Sent: now}) // 40 of the others in the window, none of ours
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.reserve(ctx, 50); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	cells := append([]int64(nil), s.cells...)
	s.mu.Unlock()
	if len(cells) < 4 {
		t.Fatalf("%d cells reserved, want several within the 200 ms horizon", len(cells))
	}
	b := s.Burst()
	for i := b; i < len(cells); i++ {
		if d := time.Duration(cells[i] - cells[i-1]); d < 20*time.Millisecond {
			t.Errorf("cells %d and %d %s apart, want at least 20ms (50 left per second)", i-1, i, d)
		}
	}
	if n, want := len(cells), b+int(200*time.Millisecond/(20*time.Millisecond)); n > want {
		t.Errorf("%d cells within the horizon, want at most %d at the rate that is left", n, want)
	}
}

// TestPolicyAdoptedDuringAReservation: the first answer's policy may be
// adopted while a reservation planned on the conservative start is being
// written. Its cells are spaced by the slow budget; they are dropped, and
// the next reservation plans on the policy's budget, instead of the
// taker waiting out the slow schedule (1 s here, 2.7 s at 110/5m).
func TestPolicyAdoptedDuringAReservation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv := startKV(t)
	cfg, err := Config{Credential: "test-credential", Auto: true, Budget: 10, Window: 10 * time.Second}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	hk := &hookKV{KeyValue: kv}
	s := newSource(hk, cfg)
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Take(ctx, 1); err != nil { // the conservative start's one cell
		t.Fatal(err)
	}
	var once sync.Once
	hk.beforeUpdate = func() {
		once.Do(func() {
			now := time.Now()
			s.ObserveRateLimit(ratelimit.RateLimitView{Name: "default", Remaining: 19, Reset: time.Second, Quota: 20, Window: time.Second,
				Seen: now, Sent: now.Add(-time.Millisecond)})
		})
	}
	if err := s.Take(ctx, 1); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if b, _ := s.Budget(); b != 18 {
		t.Fatalf("budget %d, want 18 from the policy", b)
	}
	if st.Dropped != 1 || st.Reservations != 3 || st.Granted != 2 {
		t.Errorf("reservations %d, dropped %d, granted %d: want the cell planned on the slow budget dropped and a third reservation on the policy's",
			st.Reservations, st.Dropped, st.Granted)
	}
}
