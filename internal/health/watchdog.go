package health

import (
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Watchdog tells a wedged process from a busy or idle one.
type Watchdog struct {
	bound time.Duration
	now   func() time.Time

	mu       sync.Mutex
	last     time.Time // last progress
	progress float64   // last value of the progress func
	pending  func() int
	counter  func() float64
}

// Options configure a Watchdog.
type Options struct {
	// Bound is how long work may be pending without progress.
	Bound time.Duration
	// Pending returns the work waiting or in flight (nil = none known).
	Pending func() int
	// Progress returns a value that grows whenever work finishes (a
	// counter of reconciles, for example); a change counts as a beat. Nil
	// means only Beat counts.
	Progress func() float64
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

// New returns a Watchdog whose bound starts now.
func New(o Options) *Watchdog {
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Watchdog{bound: o.Bound, now: o.Now, pending: o.Pending, counter: o.Progress}
	w.last = w.now()
	if w.counter != nil {
		w.progress = w.counter()
	}
	return w
}

// Beat records progress: a loop finished an iteration.
func (w *Watchdog) Beat() {
	w.mu.Lock()
	w.last = w.now()
	w.mu.Unlock()
}

// Check returns nil while the process is healthy, else why it is not.
func (w *Watchdog) Check() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	if w.counter != nil {
		if v := w.counter(); v != w.progress {
			w.progress, w.last = v, now
		}
	}
	pending := 0
	if w.pending != nil {
		pending = w.pending()
	}
	if pending == 0 {
		// Idle is healthy; the bound restarts when work arrives.
		w.last = now
		return nil
	}
	if idle := now.Sub(w.last); idle > w.bound {
		return fmt.Errorf("wedged: %d items pending and no progress for %s (bound %s)", pending, idle.Truncate(time.Second), w.bound)
	}
	return nil
}

// Handler answers 200 "ok" while healthy and 503 with the reason when not.
func (w *Watchdog) Handler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		if err := w.Check(); err != nil {
			http.Error(rw, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = rw.Write([]byte("ok\n"))
	})
}
