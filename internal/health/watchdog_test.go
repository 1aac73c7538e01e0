package health

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestWatchdog(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	var pending atomic.Int64
	var done atomic.Int64
	w := New(Options{Bound: time.Minute, Now: c.now,
		Pending:  func() int { return int(pending.Load()) },
		Progress: func() float64 { return float64(done.Load()) }})
	status := func() int {
		rec := httptest.NewRecorder()
		w.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code
	}

	// Idle for a long time: healthy, and the bound restarts when work comes.
	c.advance(time.Hour)
	if err := w.Check(); err != nil {
		t.Fatalf("idle: %v", err)
	}
	pending.Store(5)
	c.advance(59 * time.Second)
	if err := w.Check(); err != nil {
		t.Fatalf("work pending 59s after an idle hour: %v", err)
	}
	// Progress through Beat keeps it healthy.
	w.Beat()
	c.advance(59 * time.Second)
	if status() != http.StatusOK {
		t.Fatal("unhealthy 59s after a beat")
	}
	// Progress through the counter keeps it healthy.
	done.Add(1)
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	c.advance(59 * time.Second)
	if err := w.Check(); err != nil {
		t.Fatalf("59s after progress: %v", err)
	}
	// Pending work and no progress past the bound: wedged.
	c.advance(2 * time.Second)
	err := w.Check()
	if err == nil || !strings.Contains(err.Error(), "5 items pending") {
		t.Fatalf("wedged: got %v", err)
	}
	if status() != http.StatusServiceUnavailable {
		t.Fatal("/healthz answers 200 for a wedged process")
	}
	// A beat cures it.
	w.Beat()
	if status() != http.StatusOK {
		t.Fatal("unhealthy right after a beat")
	}
	// So does the work draining.
	c.advance(time.Hour)
	pending.Store(0)
	if status() != http.StatusOK {
		t.Fatal("unhealthy with nothing pending")
	}
}

func TestWatchdogConcurrentBeats(t *testing.T) {
	w := New(Options{Bound: time.Minute, Pending: func() int { return 1 }})
	done := make(chan struct{})
	for range 4 {
		go func() {
			for range 1000 {
				w.Beat()
			}
			done <- struct{}{}
		}()
	}
	for range 1000 {
		if err := w.Check(); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		<-done
	}
}
