package budget

import (
	"math"
	"time"

	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"go.uber.org/zap"
)

// apiView is the API's latest word on the user's budget, as kept in the
// key: every process bounds its reservations by it until it expires.
type apiView struct {
	// Remaining is the quota left (r) when the answer was seen.
	Remaining int `json:"r"`
	// Seen is when the answer arrived, and Reset when its quota resets
	// (Seen + t); Unix ns in the clock of the process that saw it.
	Seen  int64 `json:"seen"`
	Reset int64 `json:"reset"`
	// Quota and Window are the policy (q, w); zero when the answer had
	// none.
	Quota  int   `json:"q,omitempty"`
	Window int64 `json:"w_ns,omitempty"`
	// Counted is the moment up to which the API's count includes the
	// processes' own cells: when the request that got the answer was sent
	// (Seen when unknown). Cells after it were in flight, not yet counted
	// in r.
	Counted int64 `json:"counted,omitempty"`
	// Others estimates the requests in the API's window that no process
	// sharing this key made: q − r − ours, ours being the cells in the
	// window that ends at Counted.
	Others int `json:"others,omitempty"`
}

// counted returns Counted, or Seen for a view written without it.
func (v *apiView) counted() int64 {
	if v.Counted > 0 {
		return v.Counted
	}
	return v.Seen
}

// slotCount is the number of slots of the histogram of reserved cells.
const slotCount = 100

// hist is the histogram of the cells every process reserved: Slots[i]
// counts the cells whose time falls in slot First+i of width Width (Unix
// ns / Width). It covers the API's window, so the cells "we" have in the
// API's window can be counted.
type hist struct {
	Width int64   `json:"width_ns,omitempty"`
	First int64   `json:"first,omitempty"`
	Slots []int32 `json:"slots,omitempty"`
}

// add counts cells in the histogram of width w, moving it forward (and
// re-bucketing it when the width changed, see rebucket).
// It keeps the slots of one window before the newest cell, and those of
// the horizon: the window of a view seen while cells are reserved ahead.
func (h *hist) add(cells []int64, w, horizon int64) {
	if len(cells) == 0 || w <= 0 {
		return
	}
	keep := slotCount + 2 + int((horizon+w-1)/w)
	if h.Width != w {
		h.rebucket(w, floorDiv(cells[0]+horizon, w), keep)
	}
	for _, c := range cells {
		h.put(c/w, 1)
	}
	if extra := len(h.Slots) - keep; extra > 0 {
		h.Slots = h.Slots[extra:]
		h.First += int64(extra)
	}
}

// rebucket moves the counts to slots of width w (the width follows the
// API's window, so it changes when the first policy arrives, or the
// policy's window changes). The counts of each old slot move to the new
// slot that holds the old slot's end, so that they are counted for as
// long as before or a little longer, never for less; but to no slot after
// limit, the slot a horizon past the first cell of the reservation under
// way: a cell sent by now lies before it, and only cells held further
// ahead than that, on the conservative start of auto mode, which every
// process drops when it adopts the policy, could lie after. Without that
// limit a coarse old slot (3 s for a 5-minute window) would put the cells
// sent in it seconds into the future, where the estimate of the others'
// use, which counts only the cells sent by then, would miss them: others
// would appear where there are none. Counts older than the keep slots
// before the newest go into the oldest kept.
func (h *hist) rebucket(w, limit int64, keep int) {
	old := *h
	*h = hist{Width: w}
	if old.Width <= 0 || len(old.Slots) == 0 {
		return
	}
	newest := min(floorDiv((old.First+int64(len(old.Slots)))*old.Width-1, w), limit)
	for i, n := range old.Slots {
		if n == 0 {
			continue
		}
		k := min(floorDiv((old.First+int64(i)+1)*old.Width-1, w), limit)
		h.put(max(k, newest-int64(keep)+1), n)
	}
}

// put adds n to slot k, growing the histogram forward; a slot older than
// the histogram counts in its oldest slot.
func (h *hist) put(k int64, n int32) {
	if len(h.Slots) == 0 {
		h.First, h.Slots = k, []int32{0}
	}
	if k < h.First {
		k = h.First
	}
	for k >= h.First+int64(len(h.Slots)) {
		h.Slots = append(h.Slots, 0)
	}
	h.Slots[k-h.First] += n
}

// count returns the cells in slots from slot index from on (every slot at
// or after it, future cells included).
func (h hist) count(from int64) int {
	n := 0
	for i, c := range h.Slots {
		if h.First+int64(i) >= from {
			n += int(c)
		}
	}
	return n
}

// oursInWindow counts the reserved cells that may lie in the API window
// (now − window, ∞): every slot that overlaps it (an upper bound).
func (h hist) oursInWindow(now, window int64) int {
	if h.Width <= 0 {
		return 0
	}
	return h.count(floorDiv(now-window, h.Width))
}

// oursAt counts the reserved cells that the API had counted when it
// answered a request sent at sent, for the estimate of the others' use:
// the slots overlapping (sent − window, sent]. The cells after sent were
// in flight and are not in the answer's count; counting them as counted
// would hide as many of the others' requests, and let the processes
// overrun what the API leaves by their requests in flight. Each edge slot
// may hold cells outside that interval, so others are underestimated by
// at most two slots of our cells (2% of our share), which the reserve
// covers; counting fewer would make others appear where there are none,
// and cost that much of the budget.
func (h hist) oursAt(sent, window int64) int {
	if h.Width <= 0 {
		return 0
	}
	from, to := floorDiv(sent-window, h.Width), floorDiv(sent, h.Width)
	n := 0
	for i, c := range h.Slots {
		if k := h.First + int64(i); k >= from && k <= to {
			n += int(c)
		}
	}
	return n
}

// nextSlotEnd returns when the oldest slot now counted in the window
// leaves it: the earliest moment ours in the window can drop.
func (h hist) nextSlotEnd(now, window int64) int64 {
	if h.Width <= 0 {
		return 0
	}
	from := floorDiv(now-window, h.Width)
	for i, c := range h.Slots {
		if k := h.First + int64(i); k >= from && c > 0 {
			return (k+1)*h.Width + window
		}
	}
	return 0
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// newer reports whether v is a later view than cur.
func (v *apiView) newer(cur *apiView) bool { return v != nil && (cur == nil || v.Seen > cur.Seen) }

// live reports whether the view still bounds reservations at now.
func (v *apiView) live(now int64) bool { return v != nil && now < v.Reset }

// window returns the API window the view counts in, or def without a
// policy.
func (v *apiView) window(def int64) int64 {
	if v.Window > 0 {
		return v.Window
	}
	return def
}

// reserveFor returns the requests kept back for people and other tools
// out of a quota of q.
func (c *Config) reserveFor(q int) int {
	if c.Reserve > 0 {
		return c.Reserve
	}
	return int(math.Ceil(c.ReserveFraction * float64(q)))
}

// allowedLocked returns how many more cells the processes together may
// reserve at now under the view v, given the shared state st, and when
// that number can next grow (0: only with a newer view). With a policy:
// q − reserve − others − ours in the window, unbounded when the budget
// itself is no more than q − reserve − others per window. Without one: r − reserve −
// ours reserved since the view counted them (its slot included).
func (s *Source) allowedLocked(st state, v *apiView, now int64) (int, int64) {
	if v.Quota > 0 {
		w := v.window(int64(s.cfg.Window))
		if int64(s.window) >= w && s.budget <= v.Quota-s.cfg.reserveFor(v.Quota)-v.Others {
			// The budget alone keeps every window of w within what the
			// view leaves (auto mode with no other tool): the bound
			// cannot bind, and counting it with the histogram's
			// conservative edges would only stall or revoke cells the
			// budget allows.
			return math.MaxInt32, v.Reset
		}
		n := v.Quota - s.cfg.reserveFor(v.Quota) - v.Others - st.Hist.oursInWindow(now, w)
		next := st.Hist.nextSlotEnd(now, w)
		if next == 0 || next > v.Reset {
			next = v.Reset
		}
		return n, next
	}
	if st.Hist.Width <= 0 {
		return v.Remaining - s.cfg.reserveFor(s.budget), v.Reset
	}
	since := st.Hist.count(floorDiv(v.counted(), st.Hist.Width))
	return v.Remaining - s.cfg.reserveFor(s.budget) - since, v.Reset
}

// latestView returns the latest live view at now, the key's (in st) or
// this process's own (local), or nil.
func latestView(st state, local *apiView, now int64) *apiView {
	v := st.API
	if local.newer(v) {
		v = local
	}
	if !v.live(now) {
		return nil
	}
	return v
}

// histWidth is the histogram's slot width: the API window (or the
// configured one) over slotCount.
func (c *Config) histWidth(v *apiView) int64 {
	w := int64(c.Window)
	if v != nil && v.Window > 0 {
		w = v.Window
	}
	return max(w/slotCount, 1)
}

// ObserveRateLimit takes the API's view of the user's budget from one
// answer (ratelimit.RateLimitObserver). The newest view bounds this process at
// once and goes into the key with its next reservation, so that every
// process sees it. In auto mode a policy sets the budget.
func (s *Source) ObserveRateLimit(v ratelimit.RateLimitView) {
	if !v.Valid() {
		return
	}
	seen := v.Seen.UnixNano()
	av := &apiView{Remaining: v.Remaining, Seen: seen, Reset: v.ResetAt().UnixNano(), Counted: seen}
	if !v.Sent.IsZero() && !v.Sent.After(v.Seen) {
		av.Counted = v.Sent.UnixNano()
	}
	if v.HasPolicy() {
		av.Quota, av.Window = v.Quota, int64(v.Window)
	}
	now := s.clock().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	// The view becomes this process's newest unless a newer one is known;
	// the others' use is estimated, the held cells it leaves no room for
	// are revoked and the takers woken.
	if !av.newer(s.local) || !av.newer(s.cur.API) {
		return
	}
	if av.Quota > 0 {
		av.Others = max(0, av.Quota-av.Remaining-s.cur.Hist.oursAt(av.Counted, av.Window))
	}
	s.local = av
	s.stats.Views++
	if s.cfg.Auto && av.Quota > 0 {
		s.adoptPolicyLocked(av)
	}
	s.revokeLocked(av, now)
	s.apiUntil = 0 // a newer word of the API: the next reservation looks again
	s.notifyLocked()
}

// revokeLocked drops the cells this process holds for later when the
// fresh view v says the processes together are over what the API leaves:
// they were reserved on an older view, and the other tools have since
// taken more. The dropped cells stay counted as ours (the bound only
// grows more careful); as many as the excess go, the latest first. The
// excess is judged now, not at each held cell's later time: cells that
// leave the window before a held cell's time would leave room for it only
// if the others stood still, and during their burst they do not (judged at
// each cell's time, TestOtherToolNeverSees429 met a 429).
func (s *Source) revokeLocked(v *apiView, now int64) {
	if len(s.cells) == 0 {
		return
	}
	n, _ := s.allowedLocked(s.cur, v, now)
	if n >= 0 {
		return
	}
	drop := min(-n, len(s.cells))
	s.cells = s.cells[:len(s.cells)-drop]
	s.stats.Dropped += int64(drop)
	s.stats.Revoked += int64(drop)
}

// adoptPolicyLocked sets the GCRA budget to the policy's quota less the
// reserve, per the policy's window (auto mode).
func (s *Source) adoptPolicyLocked(v *apiView) {
	b := max(v.Quota-s.cfg.reserveFor(v.Quota), 2)
	w := time.Duration(v.Window)
	if (b == s.budget && w == s.window) || b <= ratelimit.BurstFor(b) {
		return
	}
	s.budget, s.window = b, w
	if s.cfg.skewDefault {
		s.cfg.MaxClockSkew = defaultSkew(w)
		s.skew = int64(s.cfg.MaxClockSkew)
	}
	if s.cfg.latenessDefault {
		s.cfg.MaxLateness = defaultLateness(w)
		s.handout = int64(s.cfg.MaxLateness / 2)
	}
	old := s.g
	s.g = newGCRA(b, w, s.cfg.MaxClockSkew+s.cfg.MaxLateness, s.cfg.Horizon)
	if s.g.interval < old.interval {
		// The held cells were spaced by the slower budget (the
		// conservative start): the next reservation plans them again on
		// the faster one, from now, instead of waiting for them. They stay
		// counted as ours; the schedule of the slower budget does not hold
		// the faster one back (reserve).
		s.dropLocked()
		s.notifyLocked()
	}
	s.log.Info("rate budget taken from the API's Ratelimit-Policy", zap.Int("budget", b), zap.Duration("window", w),
		zap.Int("quota", v.Quota), zap.Int("reserve", s.cfg.reserveFor(v.Quota)))
}

// notifyLocked wakes every waiting Take to look again.
func (s *Source) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// APIView is the API's latest view of the user's budget as this process
// knows it.
type APIView struct {
	// Remaining is the quota left when it was seen; Reset when it resets.
	Remaining int
	Seen      time.Time
	Reset     time.Time
	// Quota and Window are the policy (zero without one).
	Quota  int
	Window time.Duration
	// Others estimates the requests in the window at Seen that no process
	// sharing the budget made (zero without a policy).
	Others int
}

// APIView returns the newest view of the API seen here or shared through
// the key, and false when there is none or it expired.
func (s *Source) APIView() (APIView, bool) {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	v := latestView(s.cur, s.local, now)
	if v == nil {
		return APIView{}, false
	}
	return APIView{Remaining: v.Remaining, Seen: time.Unix(0, v.Seen), Reset: time.Unix(0, v.Reset),
		Quota: v.Quota, Window: time.Duration(v.Window), Others: v.Others}, true
}

// AllowedRate returns the rate in requests per second the processes may
// keep up, for an ETA: the budget's Rate, and no more than the API's
// latest view leaves after the reserve and the other tools' use.
func (s *Source) AllowedRate() float64 {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := float64(time.Second) / float64(s.g.interval)
	if v := latestView(s.cur, s.local, now); v != nil && v.Quota > 0 && v.Window > 0 {
		left := float64(v.Quota - s.cfg.reserveFor(v.Quota) - v.Others)
		r = min(r, max(left, 0)/time.Duration(v.Window).Seconds())
	}
	return r
}
