package backfill

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/reconciler/reconciler/internal/jobs/state"
)

// Progress is what a progress view shows of a run.
type Progress struct {
	// Done counts the scripts of this run's input that have a result;
	// Total the scripts of the input enqueued so far.
	Done, Total int
	Totals      Totals
	Elapsed     time.Duration
	// ETA is the time the rest should take (zero when unknown or done).
	ETA time.Duration
	// Counting is set while the input is still being read: Total is then
	// the scripts read so far, not the run's.
	Counting bool
}

// View shows the progress of a run. Its methods are called from more
// than one goroutine (the results being followed, the input being read).
type View interface {
	Show(Progress)
	Finish()
}

// Summary is the outcome of a run as a whole (the JSON line of
// `backfill --output json`).
type Summary struct {
	Run string `json:"run"`
	Totals
	Invalid  int       `json:"invalid"`
	Failures []Failure `json:"failures,omitempty"`
	Resumed  bool      `json:"resumed"`
	Seconds  float64   `json:"seconds"`
	// DryRun is set when nothing was written: Changed then counts the
	// scripts that would change.
	DryRun bool `json:"dry_run,omitempty"`
}

// Failure is one script (or input line) that failed.
type Failure struct {
	Script string `json:"script"`
	Reason string `json:"reason"`
	Error  string `json:"error"`
}

// Tracker follows a run's results and counts those of the scripts of this
// run's input only (Member): a resumed run counts neither results of
// scripts its input no longer holds (a namespace listed again) nor
// results of another run. It is safe for concurrent use.
type Tracker struct {
	run     string
	view    View
	eta     func(requests float64) time.Duration
	now     func() time.Time
	started time.Time

	mu      sync.Mutex
	results map[string]state.BackfillResult // every result of the run seen, by script
	members map[string]bool                 // the scripts of this input
	totals  Totals                          // of the members with a result
	total   int
	counted bool // the input was read to its end
	changed chan struct{}
}

// NewTracker returns the tracker of run id run, showing progress on
// view. eta turns a number of API requests into the time they take
// under the budget (nil: no ETA); now is the clock (nil: time.Now).
func NewTracker(run string, view View, eta func(requests float64) time.Duration, now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	if view == nil {
		view = noView{}
	}
	return &Tracker{run: run, view: view, eta: eta, now: now, started: now(),
		results: map[string]state.BackfillResult{}, members: map[string]bool{}, changed: make(chan struct{}, 1)}
}

type noView struct{}

func (noView) Show(Progress) {}
func (noView) Finish()       {}

// Result records one result of the run; a later result of a script
// replaces its earlier one. A result of another run is ignored.
func (t *Tracker) Result(r state.BackfillResult) {
	if r.Run != "" && r.Run != t.run {
		return
	}
	t.mu.Lock()
	prev, had := t.results[r.Script]
	if t.members[r.Script] {
		if had {
			t.totals.Add(r, &prev)
		} else {
			t.totals.Add(r, nil)
		}
	}
	t.results[r.Script] = r
	t.mu.Unlock()
	t.update()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// Member adds the script key to this run's input and counts it in the
// total; it reports whether the script already has a result (a resumed
// run does not enqueue it again).
func (t *Tracker) Member(key string) (done bool) {
	t.mu.Lock()
	r, has := t.results[key]
	if !t.members[key] {
		t.members[key] = true
		t.total++
		if has {
			t.totals.Add(r, nil)
		}
	}
	t.mu.Unlock()
	t.update()
	return has
}

// Retry takes back the failed result of key for a resumed run that
// retries it, and returns it (nil when key has no failed result or is
// already a member): key becomes a member of the run, which then waits
// for the script's new result.
func (t *Tracker) Retry(key string) *state.BackfillResult {
	t.mu.Lock()
	r, ok := t.results[key]
	if !ok || r.Outcome != state.ResultFailed || t.members[key] {
		t.mu.Unlock()
		return nil
	}
	delete(t.results, key)
	t.members[key] = true
	t.total++
	t.mu.Unlock()
	t.update()
	return &r
}

// Counted records that the whole input was read: Total is the run's.
func (t *Tracker) Counted() {
	t.mu.Lock()
	t.counted = true
	t.mu.Unlock()
	t.update()
}

// Total returns the scripts of the input so far.
func (t *Tracker) Total() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// Progress returns what the view is shown.
func (t *Tracker) Progress() Progress {
	t.mu.Lock()
	p := Progress{Done: t.totals.Scripts, Total: t.total, Totals: t.totals, Elapsed: t.now().Sub(t.started), Counting: !t.counted}
	t.mu.Unlock()
	if p.Counting {
		return p
	}
	// One read per script left, plus a write for the share of scripts
	// that changed so far (one when nothing is known yet).
	calls := 2.0
	if p.Done > 0 {
		calls = 1 + float64(p.Totals.Changed)/float64(p.Done)
	}
	if left := p.Total - p.Done; left > 0 && t.eta != nil {
		p.ETA = t.eta(float64(left) * calls)
	}
	return p
}

func (t *Tracker) update() { t.view.Show(t.Progress()) }

// Wait blocks until every script of the input has a result, refreshing
// the view every refresh (10s when zero) meanwhile, then finishes the view.
func (t *Tracker) Wait(ctx context.Context, refresh time.Duration) error {
	if refresh <= 0 {
		refresh = 10 * time.Second
	}
	tick := time.NewTicker(refresh)
	defer tick.Stop()
	defer t.view.Finish()
	for {
		t.mu.Lock()
		done := t.totals.Scripts >= t.total
		t.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.changed:
		case <-tick.C:
			t.update()
		}
	}
}

// Summary returns the run's totals and failures, of the scripts of the
// input only, failures sorted by script.
func (t *Tracker) Summary() *Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := &Summary{Run: t.run, Totals: t.totals}
	for key := range t.members {
		if r, ok := t.results[key]; ok && r.Outcome == state.ResultFailed {
			s.Failures = append(s.Failures, Failure{Script: r.Script, Reason: string(r.Reason), Error: r.Error})
		}
	}
	sort.Slice(s.Failures, func(i, j int) bool { return s.Failures[i].Script < s.Failures[j].Script })
	return s
}
