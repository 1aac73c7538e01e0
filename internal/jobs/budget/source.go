package budget

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/reconciler/reconciler/internal/cfapi/ratelimit"
	"go.uber.org/zap"
)

// ErrClosed is returned by Take after Close.
var ErrClosed = errors.New("shared rate budget closed")

// state is the value of a budget key.
type state struct {
	// TAT is the GCRA theoretical arrival time, Unix nanoseconds.
	TAT int64 `json:"tat"`
	// PausedUntil is the end of the last pause (Unix nanoseconds, in the
	// clock of the process that set it); 0 when none was ever set.
	PausedUntil int64 `json:"paused_until,omitempty"`
	// Budget, Window and Interval record the settings of the last writer,
	// so that a process with other settings can warn.
	Budget   int   `json:"budget"`
	Window   int64 `json:"window_ns"`
	Interval int64 `json:"interval_ns"`
	// API is the API's latest view of the user's budget (the Ratelimit
	// headers), nil until one is seen; Hist counts the cells reserved, so
	// that the processes' share of the API's window is known.
	API  *apiView `json:"api,omitempty"`
	Hist hist     `json:"hist,omitzero"`
}

// Stats counts what a Source did since it was opened.
type Stats struct {
	// Reservations counts successful compare-and-set writes that reserved
	// tokens; Reserved the tokens they reserved.
	Reservations, Reserved int64
	// Conflicts counts writes that lost to another process's write.
	Conflicts int64
	// Errors counts NATS operations that failed otherwise (timeouts, no
	// connection, bad state).
	Errors int64
	// CASTime is the time spent in compare-and-set writes (successful or
	// not) and the reads after conflicts.
	CASTime time.Duration
	// Granted counts tokens handed out; Expired reserved tokens thrown
	// away because nobody took them in time; Dropped reserved tokens thrown
	// away by a pause or Close.
	Granted, Expired, Dropped int64
	// MaxLate is the longest a token was handed out after its time (at
	// most MaxLateness/2; later ones are thrown away as Expired).
	MaxLate time.Duration
	// Held is the number of reserved tokens not yet handed out.
	Held int
	// PausesSent counts pauses written to the key; PausesSeen pauses read
	// from it that extended the pause in force.
	PausesSent, PausesSeen int64
	// Views counts the API views (Ratelimit headers) taken here; APIWaits
	// the times a reservation waited because the API's view left nothing
	// beyond the reserve.
	Views, APIWaits int64
	// Revoked counts held tokens thrown away because a fresher API view
	// left less than they assumed (counted in Dropped too).
	Revoked int64
}

// Source is a ratelimit.TokenSource shared by every process that uses one API
// token, through one KV key (see the package documentation). It is safe
// for concurrent use. Close stops it.
type Source struct {
	kv  jetstream.KeyValue
	key string
	cfg Config
	log *zap.Logger

	g       gcra
	handout int64 // a token is handed out at most this long after its time, ns
	skew    int64

	take chan struct{} // one Take at a time

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	warn  settingsWarnings
	reach reach

	mu          sync.Mutex
	cur         state
	rev         uint64 // revision of cur; 0 when unknown
	cells       []int64
	pausedUntil int64         // pause in force here, Unix ns
	changed     chan struct{} // closed and replaced when the pause changes
	closed      bool
	seenPause   int64 // the last paused_until of the key put in force here
	casEWMA     int64 // moving average of the compare-and-set round trip, ns
	stats       Stats
	budget      int           // the budget in force: cfg.Budget, or in auto mode the API's policy
	window      time.Duration // ... and its window
	local       *apiView      // the newest view seen by this process
	apiUntil    int64         // the API's view allows nothing more until then, Unix ns

	clock func() time.Time // time.Now; tests set another
}

func newSource(kv jetstream.KeyValue, cfg Config) *Source {
	key, scope := KeyFor(cfg.Credential), "token"
	if cfg.Identity != "" {
		key, scope = KeyForIdentity(cfg.Identity), "user"
	}
	cfg.Credential, cfg.Identity = "", "" // only the hash is kept
	ctx, cancel := context.WithCancel(context.Background())
	s := &Source{
		kv: kv, key: key, cfg: cfg,
		log:     cfg.Logger.With(zap.String("bucket", cfg.Bucket), zap.String("key", key)),
		g:       newGCRA(cfg.Budget, cfg.Window, cfg.MaxClockSkew+cfg.MaxLateness, cfg.Horizon),
		handout: int64(cfg.MaxLateness / 2),
		skew:    int64(cfg.MaxClockSkew),
		take:    make(chan struct{}, 1),
		ctx:     ctx, cancel: cancel,
		changed: make(chan struct{}),
		budget:  cfg.Budget, window: cfg.Window,
		clock: time.Now,
	}
	s.warn.log, s.reach.log = s.log, s.log
	s.log.Info("shared rate budget", zap.String("scope", scope), zap.Int("budget", cfg.Budget), zap.Duration("window", cfg.Window), zap.Bool("auto", cfg.Auto))
	s.wg.Add(1)
	go s.watch()
	return s
}

// Key returns the KV key of this budget (a hash, never the credential).
func (s *Source) Key() string { return s.key }

// Budget returns the budget and window the source enforces.
func (s *Source) Budget() (int, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.budget, s.window
}

// Burst returns how many requests may pass back to back.
func (s *Source) Burst() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.g.burst
}

// Rate returns the long-run rate in requests per second that the budget,
// burst and margins leave: (Budget − Burst + 1) / (Window + margins).
func (s *Source) Rate() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(time.Second) / float64(s.g.interval)
}

// Stats returns a snapshot of the counters.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Held = len(s.cells)
	st.Errors += s.reach.errorCount()
	return st
}

// PausedUntil returns the end of the pause in force, whether set here or
// by another process (extended by MaxClockSkew); zero when none.
func (s *Source) PausedUntil() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pausedUntil == 0 {
		return time.Time{}
	}
	return time.Unix(0, s.pausedUntil)
}

// Available returns the tokens that could be handed out now without
// waiting: the held ones that are due and what the shared bucket holds as
// last seen. It is 0 during a pause.
func (s *Source) Available() float64 {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now < s.pausedUntil {
		return 0
	}
	n := 0
	for _, c := range s.cells {
		if c <= now && now-c <= s.handout {
			n++
		}
	}
	if s.rev != 0 && now >= s.apiUntil {
		c := s.g.conforming(s.cur.TAT, now)
		if v := latestView(s.cur, s.local, now); v != nil {
			allowed, _ := s.allowedLocked(s.cur, v, now)
			c = min(c, max(allowed, 0))
		}
		n += c
	}
	return float64(n)
}

// Take blocks until one request may be sent now: it hands out a held token
// when its time has come, and reserves more from the shared key when none
// is held. It never grants a token it could not reserve: while NATS is
// unreachable it retries and waits. It returns ctx's error when ctx ends,
// and ErrClosed after Close.
func (s *Source) Take(ctx context.Context, demand int) error {
	select {
	case s.take <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.take }()
	retry := 10 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		changed := s.changed
		var wait int64
		if now < s.pausedUntil {
			s.dropLocked()
			wait = s.pausedUntil - now
		} else {
			// Tokens whose hand-out time has passed are thrown away: using
			// them late could crowd a window (see the package doc).
			for len(s.cells) > 0 && now-s.cells[0] > s.handout {
				s.cells = s.cells[1:]
				s.stats.Expired++
			}
			if len(s.cells) > 0 {
				if s.cells[0] <= now {
					s.stats.MaxLate = max(s.stats.MaxLate, time.Duration(now-s.cells[0]))
					s.cells = s.cells[1:]
					s.stats.Granted++
					s.mu.Unlock()
					return nil
				}
				wait = s.cells[0] - now
			} else if now < s.apiUntil {
				wait = s.apiUntil - now
			}
		}
		s.mu.Unlock()
		if wait > 0 {
			if err := sleep(ctx, s.ctx.Done(), time.Duration(wait), changed); err != nil {
				return err
			}
			continue
		}
		err := s.reserve(ctx, demand)
		if err == nil {
			retry = 10 * time.Millisecond
			s.reach.recovered()
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.ctx.Err() != nil {
			continue // closed: the next round says so
		}
		s.reach.failed(err)
		if err := sleep(ctx, s.ctx.Done(), retry, changed); err != nil {
			return err
		}
		retry = min(2*retry, time.Second)
	}
}

// sleep waits for d, until changed is closed (the pause changed), ctx
// ends or closed is (the source closes); it returns ctx's error only.
func sleep(ctx context.Context, closed <-chan struct{}, d time.Duration, changed <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-changed:
	case <-closed:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// maxConflicts bounds the compare-and-set rounds of one reservation before
// Take backs off.
const maxConflicts = 32

// reserve reserves up to demand tokens (at least one) with compare-and-set
// on the key, and adds them to the held ones. It returns nil without
// reserving when the key says a pause is in force (the pause is noted).
func (s *Source) reserve(ctx context.Context, demand int) error {
	for range maxConflicts {
		s.mu.Lock()
		cur, rev := s.cur, s.rev
		s.mu.Unlock()
		if rev == 0 {
			if err := s.load(ctx); err != nil {
				return err
			}
			continue
		}
		now := time.Now().UnixNano()
		if until := s.sharedPauseEnd(cur, now); until != 0 {
			s.notePause(until)
			return nil
		}
		s.mu.Lock()
		budget, window, interval, auto := s.budget, s.window, s.g.interval, s.cfg.Auto
		s.mu.Unlock()
		s.warn.check(cur, now, s.cfg.Window, budget, window, interval, auto)
		// Plan from when the write is expected to be confirmed, so that
		// the first tokens are not already late when it is.
		s.mu.Lock()
		lead := min(s.casEWMA, s.handout/2)
		view := latestView(cur, s.local, now)
		if view != nil && s.cfg.Auto && view.Quota > 0 {
			s.adoptPolicyLocked(view)
		}
		g := s.g
		pace := g // the schedule the cells are planned on
		if view != nil {
			// The API's word bounds every process together (apiview.go),
			// counted at the first cell's time: cells that leave the
			// window before it do not hold it back.
			first := max(now+lead, cur.TAT-g.tau)
			allowed, until := s.allowedLocked(cur, view, first)
			if allowed <= 0 {
				s.apiUntil = max(until, now+1)
				s.stats.APIWaits++
				s.mu.Unlock()
				return nil
			}
			demand = min(demand, allowed)
			// When the view's bound binds (the other tools leave less
			// than the budget), the cells are planned at the rate it
			// leaves, q − reserve − others per window. The count bound
			// alone would let the processes fill what is left of a window
			// as fast as the budget allows and then wait: their requests
			// would bunch in part of each window and leave it all at once,
			// and when the other tools burst while few of ours are leaving
			// the window, nothing makes room for them (the reserve goes,
			// and the token is blocked). Spread, ours leave the window as
			// steadily as they came, each one gone making room.
			if view.Quota > 0 {
				w := view.window(int64(s.cfg.Window))
				left := view.Quota - s.cfg.reserveFor(view.Quota) - view.Others
				if int64(s.window) < w || s.budget > left {
					pace = g.slowedTo(left, w)
				}
			}
		}
		s.apiUntil = 0
		s.mu.Unlock()
		if cur.Interval != 0 && cur.Interval > g.interval && s.cfg.Auto {
			// Auto mode left its conservative start: the schedule of the
			// slower budget does not hold the faster one back.
			cur.TAT = min(cur.TAT, now+g.interval)
		}
		cells, tat := pace.plan(cur.TAT, now+lead, demand)
		next := cur
		next.TAT = tat
		s.mu.Lock()
		next.Budget, next.Window, next.Interval = s.budget, int64(s.window), g.interval
		if s.local.newer(next.API) {
			next.API = s.local
		}
		next.Hist.Slots = append([]int32(nil), cur.Hist.Slots...)
		next.Hist.add(cells, s.cfg.histWidth(next.API), int64(s.cfg.Horizon)+s.handout)
		s.mu.Unlock()
		data, err := json.Marshal(next)
		if err != nil {
			return err
		}
		opCtx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
		start := time.Now()
		newRev, err := s.kv.Update(opCtx, s.key, data, rev)
		cancel()
		took := time.Since(start)
		s.mu.Lock()
		s.stats.CASTime += took
		s.casEWMA += (int64(took) - s.casEWMA) / 8
		switch {
		case err == nil:
			s.setLocked(next, newRev)
			s.stats.Reservations++
			s.stats.Reserved += int64(len(cells))
			switch {
			case time.Now().UnixNano() < s.pausedUntil:
				// A pause arrived while the write was under way.
				s.stats.Dropped += int64(len(cells))
			case s.g.interval < g.interval:
				// A faster budget was adopted while the write was under
				// way (auto mode's first policy): the cells are spaced by
				// the slower one. Drop them; the next reservation plans
				// on the faster budget.
				s.stats.Dropped += int64(len(cells))
			default:
				s.cells = append(s.cells, cells...)
			}
			s.mu.Unlock()
			return nil
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			s.stats.Conflicts++
			s.mu.Unlock()
			start := time.Now()
			err := s.load(ctx)
			s.mu.Lock()
			s.stats.CASTime += time.Since(start)
			s.mu.Unlock()
			if err != nil {
				return err
			}
		default:
			s.stats.Errors++
			s.mu.Unlock()
			return fmt.Errorf("reserving from the rate budget: %w", err)
		}
	}
	return fmt.Errorf("reserving from the rate budget: %d conflicting writes in a row", maxConflicts)
}

// load reads the key into the cache, creating it when it does not exist.
func (s *Source) load(ctx context.Context) error {
	opCtx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	e, err := s.kv.Get(opCtx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// A fresh budget starts with a full burst, as one process would.
		s.mu.Lock()
		fresh := state{Budget: s.budget, Window: int64(s.window), Interval: s.g.interval}
		s.mu.Unlock()
		data, _ := json.Marshal(fresh)
		rev, cerr := s.kv.Create(opCtx, s.key, data)
		if cerr == nil {
			s.mu.Lock()
			s.setLocked(fresh, rev)
			s.mu.Unlock()
			return nil
		}
		if !errors.Is(cerr, jetstream.ErrKeyExists) {
			s.reach.countError()
			return fmt.Errorf("creating rate budget key: %w", cerr)
		}
		e, err = s.kv.Get(opCtx, s.key)
	}
	if err != nil {
		s.reach.countError()
		return fmt.Errorf("reading the rate budget: %w", err)
	}
	st, err := decode(e.Value())
	if err != nil {
		s.reach.countError()
		return fmt.Errorf("rate budget key %s in bucket %s: %w (delete the key to start afresh)", s.key, s.cfg.Bucket, err)
	}
	s.mu.Lock()
	s.setLocked(st, e.Revision())
	s.mu.Unlock()
	return nil
}

func decode(data []byte) (state, error) {
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("not a rate budget state: %w", err)
	}
	return st, nil
}

// setLocked caches st at rev unless a newer revision is cached already.
func (s *Source) setLocked(st state, rev uint64) {
	if rev >= s.rev {
		s.cur, s.rev = st, rev
	}
}

// dropLocked throws the held tokens away.
func (s *Source) dropLocked() {
	s.stats.Dropped += int64(len(s.cells))
	s.cells = nil
}

// notePause puts a pause until until (Unix ns) in force here: held tokens
// are dropped and waiting takers look again.
func (s *Source) notePause(until int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if until <= s.pausedUntil || s.closed {
		return false
	}
	s.pausedUntil = until
	s.dropLocked()
	close(s.changed)
	s.changed = make(chan struct{})
	return true
}

// Pause holds back this process until until and writes the pause into the
// key, so that every process sharing the budget holds back too. It does
// not wait for the write.
func (s *Source) Pause(until time.Time) {
	u := until.UnixNano()
	s.notePause(u)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sharePause(u)
	}()
}

// sharePause writes paused_until = u into the key unless a later pause is
// there already, retrying until the pause is over.
func (s *Source) sharePause(u int64) {
	ctx, cancel := context.WithDeadline(s.ctx, time.Unix(0, u))
	defer cancel()
	retry := 10 * time.Millisecond
	for ctx.Err() == nil {
		s.mu.Lock()
		cur, rev := s.cur, s.rev
		s.mu.Unlock()
		var err error
		switch {
		case rev == 0:
			err = s.load(ctx)
		case cur.PausedUntil >= u:
			return
		default:
			next := cur
			next.PausedUntil = u
			data, _ := json.Marshal(next)
			opCtx, opCancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
			var newRev uint64
			newRev, err = s.kv.Update(opCtx, s.key, data, rev)
			opCancel()
			s.mu.Lock()
			switch {
			case err == nil:
				s.setLocked(next, newRev)
				s.stats.PausesSent++
				s.mu.Unlock()
				return
			case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
				s.stats.Conflicts++
			default:
				s.stats.Errors++
			}
			s.mu.Unlock()
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				err = s.load(ctx)
			}
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("cannot share a rate-limit pause with the other processes; retrying", zap.Error(err))
			t := time.NewTimer(retry)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			retry = min(2*retry, time.Second)
		}
	}
}

// watch follows the key: newer states are cached (fewer conflicts, a
// fresh Available) and a pause set by another process is put in force at
// once.
func (s *Source) watch() {
	defer s.wg.Done()
	for s.ctx.Err() == nil {
		w, err := s.kv.Watch(s.ctx, s.key)
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("cannot watch the shared rate budget; retrying", zap.Error(err))
				t := time.NewTimer(time.Second)
				select {
				case <-t.C:
				case <-s.ctx.Done():
				}
				t.Stop()
			}
			continue
		}
		// The watcher's channel is not closed by the context alone: stop
		// it when the source closes, or Close waits for ever.
		stopWatch := context.AfterFunc(s.ctx, func() { _ = w.Stop() })
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			st, err := decode(e.Value())
			if err != nil {
				s.log.Warn("ignoring an invalid rate budget state", zap.Error(err))
				continue
			}
			s.mu.Lock()
			prev := s.cur.API
			s.setLocked(st, e.Revision())
			if st.API.newer(prev) && s.apiUntil != 0 {
				s.apiUntil = 0 // a newer view of the API: look again
				s.notifyLocked()
			}
			if v := latestView(s.cur, s.local, s.clock().UnixNano()); s.cfg.Auto && v != nil && v.Quota > 0 {
				// Another process saw the policy first: cells held on the
				// conservative start go now, not when their time comes.
				s.adoptPolicyLocked(v)
			}
			s.mu.Unlock()
			if until := s.sharedPauseEnd(st, time.Now().UnixNano()); until != 0 {
				if s.notePause(until) {
					s.mu.Lock()
					s.stats.PausesSeen++
					s.mu.Unlock()
				}
			}
		}
		stopWatch()
		_ = w.Stop()
	}
}

// sharedPauseEnd returns when the pause recorded in st ends for this
// process, or 0 when it is over or was put in force already: extended by
// MaxClockSkew, since it was set on another clock, and never more than a
// window and the skew from when this process first saw it, so that a
// clock far ahead cannot stop every process for long.
func (s *Source) sharedPauseEnd(st state, now int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.PausedUntil == 0 || st.PausedUntil == s.seenPause {
		return 0
	}
	until := min(st.PausedUntil+s.skew, now+int64(s.window)+s.skew)
	if now >= until {
		return 0
	}
	s.seenPause = st.PausedUntil
	return until
}

// settingsWarnings warns once when the key was last written by a process
// with other settings (the guarantee assumes one budget per token), and
// once when the state is further ahead of this clock than reservations can
// explain (a clock far ahead: everyone waits for it, which is safe but
// slow).
type settingsWarnings struct {
	cfg   sync.Once // a different budget on the same token
	clock sync.Once // a clock far behind the shared state
	log   *zap.Logger
}

// check compares the key's state cur at now with this process's budget
// (budget per window, the GCRA interval, auto mode) and its configured
// window.
func (w *settingsWarnings) check(cur state, now int64, cfgWindow time.Duration, budget int, window time.Duration, interval int64, auto bool) {
	if ahead := cur.TAT - now; ahead > int64(cfgWindow) {
		w.clock.Do(func() {
			w.log.Warn("the shared rate budget is scheduled far ahead of this clock; a process sharing the token has a clock that is ahead (tokens wait until then)",
				zap.Duration("ahead", time.Duration(ahead)))
		})
	}
	if auto || cur.Interval == 0 || (cur.Budget == budget && cur.Window == int64(window) && cur.Interval == interval) {
		return
	}
	w.cfg.Do(func() {
		w.log.Warn("another process shares this API token with a different rate budget; run every process with the same --rate-limit",
			zap.Int("budget", budget), zap.Duration("window", window),
			zap.Int("other_budget", cur.Budget), zap.Duration("other_window", time.Duration(cur.Window)))
	})
}

// reach says, once per change, whether the key's NATS answers: the first
// failure after a success is logged, and so is the recovery.
type reach struct {
	mu      sync.Mutex
	failing bool  // NATS operations are failing (logged once)
	errors  int64 // failed NATS operations counted by countError
	log     *zap.Logger
}

// countError counts a failed NATS operation.
func (r *reach) countError() {
	r.mu.Lock()
	r.errors++
	r.mu.Unlock()
}

// errorCount returns the failed NATS operations counted so far.
func (r *reach) errorCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errors
}

// failed logs the first failure after a success.
func (r *reach) failed(err error) {
	r.mu.Lock()
	first := !r.failing
	r.failing = true
	r.mu.Unlock()
	if first {
		r.log.Warn("cannot reach the shared rate budget; sending nothing until it is back", zap.Error(err))
	}
}

// recovered logs the first success after a failure.
func (r *reach) recovered() {
	r.mu.Lock()
	was := r.failing
	r.failing = false
	r.mu.Unlock()
	if was {
		r.log.Info("shared rate budget reachable again")
	}
}

// Close stops the source: the watch ends, held tokens are dropped and Take
// returns ErrClosed. It does not delete the key (the budget lives on for
// the other processes).
func (s *Source) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.dropLocked()
	close(s.changed)
	s.changed = make(chan struct{})
	st := s.stats
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.log.Info("shared rate budget closed", zap.Int64("granted", st.Granted), zap.Int64("reserved", st.Reserved),
		zap.Int64("reservations", st.Reservations), zap.Int64("conflicts", st.Conflicts), zap.Int64("expired", st.Expired),
		zap.Int64("dropped", st.Dropped), zap.Int64("revoked", st.Revoked), zap.Int64("api_views", st.Views),
		zap.Int64("api_waits", st.APIWaits), zap.Duration("max_late", st.MaxLate))
	return nil
}

var _ ratelimit.TokenSource = (*Source)(nil)
