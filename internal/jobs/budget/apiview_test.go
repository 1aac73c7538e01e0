package budget

import (
	"slices"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi"
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

// reserved records cells as reserved by the processes (in the shared
// histogram) at the histogram width of a 1 s policy.
func (s *Source) reserved(cells ...int64) {
	s.cur.Hist.add(cells, int64(time.Second)/slotCount, int64(s.cfg.Horizon)+s.handout)
}

// TestRevokeJudgesEachCellAtItsTime: a fresh view revokes a held cell
// only when the window that ends at the cell's own time has no room for
// it, counting the cells that left that window by then as gone. The view
// that leaves room for every held cell revokes none (judged at the
// moment of the view, the cells about to leave the window would have
// revoked all five); a burst of the others revokes the cells that do not
// fit, and the cells kept never put a window over the bound.
func TestRevokeJudgesEachCellAtItsTime(t *testing.T) {
	now := t0
	s := bareSource(t, Config{Budget: 1000, Window: time.Second, Reserve: 10}, &now)
	base := t0.UnixNano()
	var old []int64
	for i := range 80 {
		old = append(old, base-995*ms+int64(i)*6*ms) // sent, in the API's window
	}
	held := []int64{base + 10*ms, base + 20*ms, base + 30*ms, base + 40*ms, base + 50*ms}
	s.reserved(old...)
	s.reserved(held...)
	s.cells = slices.Clone(held)
	view := func(seen time.Duration, others int) *apiView {
		// The answer to a request sent at t0: it counts the 80 old cells.
		return &apiView{Quota: 100, Window: int64(time.Second), Remaining: 100 - len(old) - others,
			Seen: base + int64(seen), Reset: base + int64(seen) + int64(time.Second), Counted: base}
	}

	s.mu.Lock()
	s.observeLocked(view(time.Millisecond, 10), base)
	cells, revoked := slices.Clone(s.cells), s.stats.Revoked
	s.mu.Unlock()
	if revoked != 0 || !slices.Equal(cells, held) {
		t.Fatalf("others 10 (room for 80 of ours in every window): revoked %d, held %v, want all 5 kept", revoked, cells)
	}

	s.mu.Lock()
	s.observeLocked(view(2*time.Millisecond, 14), base)
	cells, revoked = slices.Clone(s.cells), s.stats.Revoked
	others := s.local.Others
	s.mu.Unlock()
	if others != 14 {
		t.Fatalf("others estimated %d, want 14", others)
	}
	if want := held[2:]; revoked != 2 || !slices.Equal(cells, want) {
		t.Errorf("others 14 (room for 76): revoked %d, held %v, want %v", revoked, cells, want)
	}
	limit := 100 - 10 - others
	for _, c := range cells {
		n := 0
		for _, o := range append(slices.Clone(old), cells...) {
			if o > c-int64(time.Second) && o <= c {
				n++
			}
		}
		if n > limit {
			t.Errorf("kept cell at t0%+dms: %d of ours in the window that ends there, over %d", (c-base)/ms, n, limit)
		}
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
	s.reserved(counted...)
	s.reserved(inFlight...)
	const quota, others = 100, 5
	answer := cfapi.RateLimitView{Name: "default", Remaining: quota - len(counted) - others, Reset: time.Second,
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
// slot that holds the old slot's end, not all to the newest one: a cell
// held far ahead under the conservative start does not push the cells
// reserved since into the future, where the estimate of the others'
// use, which counts only the cells sent by then, would miss them.
func TestHistogramRebucketsEachSlotAtItsEnd(t *testing.T) {
	base := t0.UnixNano()
	h := hist{}
	coarse, fine := int64(100*time.Millisecond), int64(10*time.Millisecond)
	h.add([]int64{base, base + int64(time.Second)}, coarse, 0) // one sent, one held far ahead
	h.add([]int64{base + 150*ms}, fine, 0)
	w := int64(time.Second)
	if got := h.oursAt(base+160*ms, w); got != 2 {
		t.Errorf("cells counted by t0+160ms: %d, want 2 (the old cell and the new one)", got)
	}
	if got := h.oursAt(base+50*ms, w); got != 0 {
		t.Errorf("cells counted by t0+50ms: %d, want 0 (the old cell counts from its old slot's end, t0+99ms)", got)
	}
	if got := h.oursInWindow(base+999*ms, w); got != 3 {
		t.Errorf("cells in the window at t0+999ms: %d, want 3 (a re-bucketed cell is counted for no less)", got)
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
	s.ObserveRateLimit(cfapi.RateLimitView{Name: "default", Remaining: 19, Reset: time.Second, Quota: 20, Window: time.Second,
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
