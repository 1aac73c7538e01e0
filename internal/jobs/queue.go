package jobs

import (
	"slices"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// lane is the class of work a script is queued for. Live work (events)
// always comes before backfill work.
type lane uint8

const (
	laneLive lane = iota
	laneBackfill
	numLanes
)

func (l lane) String() string {
	if l == laneBackfill {
		return "backfill"
	}
	return "live"
}

// keyQueue is a work queue of script keys with the client-go contract: a
// key is never handed to two workers at once, adds of a key that is
// already queued collapse into one, and a key added while it is being
// processed is queued again once Done is called. On top of it:
//
//   - two lanes: Get hands out live keys before backfill keys, and a key
//     queued for backfill that gets live work moves to the live lane;
//   - debouncing (Debounce): a key is ready delay after its last add, but
//     never later than maxWait after its first, and while backlog reports a
//     fold backlog the key waits (up to the same maxWait), so that a storm
//     of events for one script costs one reconcile;
//   - delays (AddAfter), and per-key backoff after failures
//     (AddRateLimited, Forget), as client-go's rate-limited queue.
//
// Every timer comes from the injected clock, so tests step time instead of
// waiting for it. A timer's callback runs fire in a goroutine of its own,
// never under the clock's lock.
type keyQueue struct {
	queueOptions

	mu       sync.Mutex
	cond     *sync.Cond
	ready    [numLanes][]string
	items    map[string]*queueItem
	failures map[string]int // consecutive failed reconciles, by key
	shutdown bool
}

// queueOptions configure a keyQueue.
type queueOptions struct {
	// delay and maxWait are the debounce's quiet period and its bound.
	delay, maxWait time.Duration
	// backlog reports a fold backlog: debounced keys wait for it.
	backlog func() bool
	// backoff is the delay before the n-th retry of a failed key (n ≥ 1);
	// maxRetries bounds the retries of a key that keeps failing.
	backoff    func(n int) time.Duration
	maxRetries int
	clock      clock.WithDelayedExecution
}

type queueItem struct {
	lane       lane
	queued     bool // in a ready list, or to be put back there by Done
	processing bool
	timer      clock.Timer
	due        time.Time // when the timer fires
	deadline   time.Time // debounce: never later than this (zero: not debouncing)
}

func newKeyQueue(opts queueOptions) *keyQueue {
	q := &keyQueue{queueOptions: opts, items: map[string]*queueItem{}, failures: map[string]int{}}
	q.maxWait = max(q.maxWait, q.delay)
	if q.backlog == nil {
		q.backlog = func() bool { return false }
	}
	if q.backoff == nil {
		q.backoff = func(int) time.Duration { return time.Second }
	}
	if q.clock == nil {
		q.clock = clock.RealClock{}
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *keyQueue) item(key string) *queueItem {
	it, ok := q.items[key]
	if !ok {
		it = &queueItem{lane: laneBackfill}
		q.items[key] = it
	}
	return it
}

// Add queues key now for lane l.
func (q *keyQueue) Add(key string, l lane) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key, l)
}

func (q *keyQueue) addLocked(key string, l lane) {
	if q.shutdown {
		return
	}
	it := q.item(key)
	if it.timer != nil {
		it.timer.Stop()
		it.timer = nil
		it.deadline = time.Time{}
	}
	if it.queued {
		if l < it.lane && !it.processing {
			q.ready[it.lane] = slices.DeleteFunc(q.ready[it.lane], func(k string) bool { return k == key })
			q.ready[l] = append(q.ready[l], key)
			q.cond.Signal()
		}
		it.lane = min(it.lane, l)
		return
	}
	it.queued = true
	it.lane = l
	if it.processing {
		return // queued again by Done
	}
	q.ready[l] = append(q.ready[l], key)
	q.cond.Signal()
}

// Debounce queues key for lane l once no add came for the queue's delay,
// at the latest maxWait after the first add (see keyQueue).
func (q *keyQueue) Debounce(key string, l lane) {
	if q.delay <= 0 {
		q.Add(key, l)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	it := q.item(key)
	if it.queued {
		if l < it.lane {
			q.addLocked(key, l)
		}
		return
	}
	it.lane = min(it.lane, l)
	now := q.clock.Now()
	if it.deadline.IsZero() {
		it.deadline = now.Add(q.maxWait)
	}
	q.schedule(key, it, minTime(now.Add(q.delay), it.deadline))
}

// AddAfter queues key for lane l after d, unless it is queued sooner.
func (q *keyQueue) AddAfter(key string, l lane, d time.Duration) {
	if d <= 0 {
		q.Add(key, l)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	it := q.item(key)
	it.lane = min(it.lane, l)
	if it.queued {
		return
	}
	due := q.clock.Now().Add(d)
	if it.timer != nil && it.due.Before(due) {
		return
	}
	q.schedule(key, it, due)
}

// AddRateLimited queues key for lane l again after the backoff of its
// consecutive failures and reports true; once the key has failed
// maxRetries times in a row it is not queued and it reports false.
func (q *keyQueue) AddRateLimited(key string, l lane) bool {
	q.mu.Lock()
	q.failures[key]++
	n := q.failures[key]
	q.mu.Unlock()
	if n > q.maxRetries {
		return false
	}
	q.AddAfter(key, l, q.backoff(n))
	return true
}

// Forget ends the backoff of key after a success.
func (q *keyQueue) Forget(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, key)
}

// schedule (re)arms the timer of key to fire at due; q.mu is held.
func (q *keyQueue) schedule(key string, it *queueItem, due time.Time) {
	it.due = due
	if it.timer != nil {
		it.timer.Stop() // a new timer rather than Reset: fired timers are not reused
	}
	it.timer = q.clock.AfterFunc(due.Sub(q.clock.Now()), func() { go q.fire(key) })
}

// fire queues key when its timer is due, unless a debounced key must wait
// for the fold backlog.
func (q *keyQueue) fire(key string) {
	backlog := q.backlog()
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := q.items[key]
	if !ok || it.timer == nil || q.shutdown {
		return
	}
	now := q.clock.Now()
	if now.Before(it.due) {
		return // re-armed meanwhile; the new timer fires later
	}
	if backlog && !it.deadline.IsZero() && now.Before(it.deadline) {
		// Events are still being folded: wait for the backlog.
		q.schedule(key, it, minTime(now.Add(q.delay), it.deadline))
		return
	}
	it.timer = nil
	q.addLocked(key, it.lane)
}

// Get blocks until a key is ready or the queue shuts down, and returns it
// with its lane: live keys first.
func (q *keyQueue) Get() (string, lane, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ready[laneLive]) == 0 && len(q.ready[laneBackfill]) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", 0, false
	}
	l := laneLive
	if len(q.ready[laneLive]) == 0 {
		l = laneBackfill
	}
	key := q.ready[l][0]
	q.ready[l] = q.ready[l][1:]
	it := q.items[key]
	it.queued = false
	it.processing = true
	it.deadline = time.Time{}
	return key, l, true
}

// Done ends the processing of key and queues it again if it was added
// meanwhile.
func (q *keyQueue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := q.items[key]
	if !ok {
		return
	}
	it.processing = false
	switch {
	case it.queued && !q.shutdown:
		q.ready[it.lane] = append(q.ready[it.lane], key)
		q.cond.Signal()
	case !it.queued && it.timer == nil:
		delete(q.items, key)
	}
}

// Ready returns the number of keys of lane l ready to be processed.
func (q *keyQueue) Ready(l lane) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ready[l])
}

// Pending returns the number of keys of each lane queued, waiting on a
// timer, or being processed.
func (q *keyQueue) Pending() [numLanes]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out [numLanes]int
	for _, it := range q.items {
		out[it.lane]++
	}
	return out
}

// ShutDown wakes every Get with ok=false and drops pending adds.
func (q *keyQueue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for _, it := range q.items {
		if it.timer != nil {
			it.timer.Stop()
			it.timer = nil
		}
	}
	q.cond.Broadcast()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
