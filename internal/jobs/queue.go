package jobs

import (
	"sync"
	"time"
)

// keyQueue is a work queue of script keys with the client-go contract: a
// key is never handed to two workers at once, adds of a key that is already
// queued collapse into one, and a key added while it is being processed is
// queued again once Done is called. AddAfter delays an add (coalescing a
// burst of events, or backing off after a failure).
type keyQueue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	queue      []string
	queued     map[string]bool // in queue, or to be queued when processing ends
	processing map[string]bool
	timers     map[string]*time.Timer
	shutdown   bool
}

func newKeyQueue() *keyQueue {
	q := &keyQueue{queued: map[string]bool{}, processing: map[string]bool{}, timers: map[string]*time.Timer{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now.
func (q *keyQueue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *keyQueue) addLocked(key string) {
	if q.shutdown {
		return
	}
	if t, ok := q.timers[key]; ok {
		t.Stop()
		delete(q.timers, key)
	}
	if q.queued[key] {
		return
	}
	q.queued[key] = true
	if q.processing[key] {
		return // queued by Done
	}
	q.queue = append(q.queue, key)
	q.cond.Signal()
}

// AddAfter queues key after d, unless it is queued sooner. An earlier
// pending AddAfter is kept (it bounds the delay of the first event of a
// burst).
func (q *keyQueue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown || q.queued[key] {
		return
	}
	if _, ok := q.timers[key]; ok {
		return
	}
	q.timers[key] = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		delete(q.timers, key)
		q.addLocked(key)
	})
}

// Get blocks until a key is ready or the queue shuts down.
func (q *keyQueue) Get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.queue) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	key := q.queue[0]
	q.queue = q.queue[1:]
	q.queued[key] = false
	delete(q.queued, key)
	q.processing[key] = true
	return key, true
}

// Done ends the processing of key and queues it again if it was added
// meanwhile.
func (q *keyQueue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.queued[key] && !q.shutdown {
		q.queue = append(q.queue, key)
		q.cond.Signal()
	}
}

// Len returns the number of keys ready to be processed.
func (q *keyQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// Pending returns the number of keys queued or waiting on a timer.
func (q *keyQueue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queued) + len(q.timers)
}

// ShutDown wakes every Get with ok=false and drops pending adds.
func (q *keyQueue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for k, t := range q.timers {
		t.Stop()
		delete(q.timers, k)
	}
	q.cond.Broadcast()
}
