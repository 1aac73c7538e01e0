package jobs

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

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
	q := newKeyQueue(queueOptions{})
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
	q := newKeyQueue(queueOptions{})
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

// fakeClock is a fake clock at a fixed start; fired reports when the
// queue's timer callbacks, which run in goroutines of their own, have run.
func fakeClock() *testingclock.FakeClock { return testingclock.NewFakeClock(time.Unix(1e9, 0)) }

// stepAndSettle moves fc on by d and waits until the queue has armed its
// next timer again or made key ready: a timer callback runs in a goroutine
// of its own.
func stepAndSettle(t *testing.T, fc *testingclock.FakeClock, q *keyQueue, d time.Duration) {
	t.Helper()
	fc.Step(d)
	testutil.Eventually(t, 5*time.Second, func() bool {
		return fc.HasWaiters() || q.Ready(laneLive) > 0 || q.Ready(laneBackfill) > 0
	}, "the queue's timer callback ran")
}

func TestQueueDebounceWaitsForQuietThenCapsAtMaxWait(t *testing.T) {
	fc := fakeClock()
	q := newKeyQueue(queueOptions{delay: 100 * time.Millisecond, maxWait: 500 * time.Millisecond, clock: fc})
	defer q.ShutDown()

	// Quiet: ready exactly delay after the last add.
	q.Debounce("quiet", laneLive)
	fc.Step(99 * time.Millisecond)
	if q.Ready(laneLive) != 0 {
		t.Fatal("ready before the quiet period passed")
	}
	stepAndSettle(t, fc, q, time.Millisecond)
	if k, _ := get(t, q); k != "quiet" {
		t.Fatalf("got %s", k)
	}
	q.Done("quiet")

	// A steady trickle every 50ms keeps pushing the key back, but maxWait
	// bounds the wait from the first add.
	q.Debounce("busy", laneLive)
	for elapsed := 50 * time.Millisecond; elapsed < 500*time.Millisecond; elapsed += 50 * time.Millisecond {
		fc.Step(50 * time.Millisecond)
		if q.Ready(laneLive) != 0 {
			t.Fatalf("ready %s after the first add while events kept coming", elapsed)
		}
		q.Debounce("busy", laneLive)
	}
	stepAndSettle(t, fc, q, 50*time.Millisecond) // 500ms: maxWait
	if k, _ := get(t, q); k != "busy" {
		t.Fatalf("got %s", k)
	}
}

func TestQueueHoldDefersUntilBacklogFolded(t *testing.T) {
	fc := fakeClock()
	var backlog atomic.Bool
	backlog.Store(true)
	q := newKeyQueue(queueOptions{delay: 10 * time.Millisecond, maxWait: 10 * time.Second, backlog: backlog.Load, clock: fc})
	defer q.ShutDown()
	q.Debounce("k", laneLive)
	for i := 0; i < 5; i++ { // five debounce periods pass with a backlog
		stepAndSettle(t, fc, q, 10*time.Millisecond)
		if n := q.Ready(laneLive); n != 0 {
			t.Fatalf("a key became ready while the fold backlog was being processed (period %d)", i+1)
		}
	}
	backlog.Store(false)
	stepAndSettle(t, fc, q, 10*time.Millisecond)
	if n := q.Ready(laneLive); n != 1 {
		t.Fatalf("%d keys ready once the backlog is folded, want 1", n)
	}
}

func TestQueueBacklogWaitEndsAtMaxWait(t *testing.T) {
	fc := fakeClock()
	q := newKeyQueue(queueOptions{delay: 10 * time.Millisecond, maxWait: 30 * time.Millisecond,
		backlog: func() bool { return true }, clock: fc})
	defer q.ShutDown()
	q.Debounce("k", laneLive)
	stepAndSettle(t, fc, q, 10*time.Millisecond)
	stepAndSettle(t, fc, q, 10*time.Millisecond)
	if q.Ready(laneLive) != 0 {
		t.Fatal("ready before maxWait while the backlog lasts")
	}
	stepAndSettle(t, fc, q, 10*time.Millisecond)
	if q.Ready(laneLive) != 1 {
		t.Fatal("a backlog that never ends holds the key past maxWait")
	}
}

func TestQueueRateLimitedBacksOffAndForgets(t *testing.T) {
	fc := fakeClock()
	var asked []int
	q := newKeyQueue(queueOptions{clock: fc, maxRetries: 2, backoff: func(n int) time.Duration {
		asked = append(asked, n)
		return time.Duration(n) * time.Second
	}})
	defer q.ShutDown()
	if !q.AddRateLimited("k", laneLive) {
		t.Fatal("the first retry was refused")
	}
	fc.Step(999 * time.Millisecond)
	if q.Ready(laneLive) != 0 {
		t.Fatal("retried before its backoff")
	}
	stepAndSettle(t, fc, q, time.Millisecond)
	k, _ := get(t, q)
	q.Done(k)
	if !q.AddRateLimited("k", laneLive) {
		t.Fatal("the second retry was refused")
	}
	if q.AddRateLimited("k", laneLive) {
		t.Fatal("a third consecutive failure was retried past maxRetries")
	}
	q.Forget("k")
	q.AddRateLimited("k", laneLive)
	if want := []int{1, 2, 1}; !slices.Equal(asked, want) {
		t.Fatalf("backoff asked for failures %v, want %v (Forget starts again)", asked, want)
	}
}

func TestQueueAddAfterKeepsEarliest(t *testing.T) {
	fc := fakeClock()
	q := newKeyQueue(queueOptions{clock: fc})
	defer q.ShutDown()
	q.AddAfter("k", laneLive, 20*time.Millisecond)
	q.AddAfter("k", laneLive, time.Hour) // a later retry does not push it back
	stepAndSettle(t, fc, q, 20*time.Millisecond)
	if k, _ := get(t, q); k != "k" {
		t.Fatal(k)
	}
}

func TestQueueShutDownWakesGet(t *testing.T) {
	q := newKeyQueue(queueOptions{})
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
