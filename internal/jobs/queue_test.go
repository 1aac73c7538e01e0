package jobs

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/reconciler/reconciler/internal/testutil"
)

// get returns the next ready key or fails after a while.
func get(t *testing.T, q *keyQueue) (string, lane) {
	t.Helper()
	type kl struct {
		k string
		l lane
	}
	ch := make(chan kl, 1)
	go func() {
		k, l, ok := q.Get()
		if ok {
			ch <- kl{k, l}
		}
	}()
	select {
	case v := <-ch:
		return v.k, v.l
	case <-time.After(5 * time.Second):
		t.Fatal("no key became ready")
		return "", 0
	}
}

func TestQueueLiveBeforeBackfill(t *testing.T) {
	q := newKeyQueue(0, 0, nil)
	defer q.ShutDown()
	q.Add("b1", laneBackfill)
	q.Add("b2", laneBackfill)
	q.Add("l1", laneLive)
	q.Add("b2", laneLive) // live work for a queued backfill key moves it up
	for _, want := range []struct {
		k string
		l lane
	}{{"l1", laneLive}, {"b2", laneLive}, {"b1", laneBackfill}} {
		k, l := get(t, q)
		if k != want.k || l != want.l {
			t.Fatalf("got %s/%s, want %s/%s", k, l, want.k, want.l)
		}
		q.Done(k)
	}
}

func TestQueueOneWorkerPerKeyAndRequeueAfterDone(t *testing.T) {
	q := newKeyQueue(0, 0, nil)
	defer q.ShutDown()
	q.Add("a", laneLive)
	k, _ := get(t, q)
	q.Add("a", laneLive) // while processing
	q.Add("a", laneLive) // collapses
	if n := q.Ready(laneLive); n != 0 {
		t.Fatalf("a key being processed is ready again: %d", n)
	}
	q.Done(k)
	if k2, _ := get(t, q); k2 != "a" {
		t.Fatalf("got %s", k2)
	}
	q.Done("a")
	if n := q.Ready(laneLive); n != 0 {
		t.Fatalf("adds during processing should collapse into one, %d ready", n)
	}
}

func TestQueueDebounceWaitsForQuietThenCapsAtMaxWait(t *testing.T) {
	// The quiet period is ten ticks long, so a scheduler stall of a few
	// ticks on a loaded machine does not end it early.
	q := newKeyQueue(100*time.Millisecond, 500*time.Millisecond, nil)
	defer q.ShutDown()
	start := time.Now()
	stop := time.After(time.Second)
	// Events every 10ms keep pushing the key back, but maxWait bounds it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				q.Debounce("k", laneLive)
			}
		}
	}()
	k, _ := get(t, q)
	waited := time.Since(start)
	q.Done(k)
	<-done
	if waited < 400*time.Millisecond {
		t.Fatalf("ready after %s: debounce did not wait while events kept coming", waited)
	}
	if waited > 3*time.Second {
		t.Fatalf("ready after %s: maxWait was not honoured", waited)
	}
}

func TestQueueHoldDefersUntilBacklogFolded(t *testing.T) {
	var backlog atomic.Bool
	backlog.Store(true)
	q := newKeyQueue(10*time.Millisecond, 10*time.Second, backlog.Load)
	defer q.ShutDown()
	q.Debounce("k", laneLive)
	time.Sleep(100 * time.Millisecond) // several debounce periods pass
	if n := q.Ready(laneLive); n != 0 {
		t.Fatal("a key became ready while the fold backlog was being processed")
	}
	backlog.Store(false)
	testutil.Eventually(t, 5*time.Second, func() bool { return q.Ready(laneLive) == 1 }, "key ready once the backlog is folded")
}

func TestQueueAddAfterKeepsEarliest(t *testing.T) {
	q := newKeyQueue(0, 0, nil)
	defer q.ShutDown()
	q.AddAfter("k", laneLive, 20*time.Millisecond)
	q.AddAfter("k", laneLive, time.Hour) // a later retry does not push it back
	if k, _ := get(t, q); k != "k" {
		t.Fatal(k)
	}
}

func TestQueueShutDownWakesGet(t *testing.T) {
	q := newKeyQueue(0, 0, nil)
	done := make(chan bool)
	go func() { _, _, ok := q.Get(); done <- ok }()
	q.ShutDown()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("Get returned a key after ShutDown")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Get not woken by ShutDown")
	}
}
